// Drives two published npm Akismet clients against modclf's Akismet-compatible API and prints what
// each call returned, as one JSON object, for tests/test_akismet_node.py to check.
//
//   node drive.mjs http://127.0.0.1:PORT/akismet/ KEY https://news.example.org/
//
// akismet-api (chrisfosterelli, the client Coral uses) sends verify-key to
// <protocol>://<host>/<version>/ with `key` in the body, and every other call to
// <protocol>://<KEY>.<host>/<version>/ with no key in the body (Akismet's key-as-subdomain style).
// Its `host` option may carry a path, so host "localhost:PORT/akismet" points it here; the
// <KEY>.localhost names it derives are resolved to loopback below, as RFC 6761 reserves them and
// as systemd-resolved and browsers do (glibc's files+dns lookup does not). Nothing else of the
// client is touched.
//
// @cedx/akismet takes a base URL and sends `api_key` in the body of every call, verify-key included.

import dns from "node:dns";
import process from "node:process";
import { createRequire } from "node:module";
import { Author, Blog, CheckResult, Client, Comment } from "@cedx/akismet";

const require = createRequire(import.meta.url);
const { AkismetClient } = require("akismet-api");

const [base, key, blog] = process.argv.slice(2);
const baseUrl = new URL(base);
const port = baseUrl.port;
const path = baseUrl.pathname.replace(/\/+$/, "");  // "/akismet"

const realLookup = dns.lookup;
dns.lookup = function lookup(hostname, options, callback) {
  if (typeof options === "function") [options, callback] = [{}, options];
  if (typeof options === "number") options = { family: options };
  if (hostname === "localhost" || hostname.endsWith(".localhost")) {
    const address = "127.0.0.1";
    return process.nextTick(() => options?.all ? callback(null, [{ address, family: 4 }]) : callback(null, address, 4));
  }
  return realLookup.call(dns, hostname, options, callback);
};

const LINK_DROP = "Make $5000 a week from home!!! Click here www.easy-cash-now.com and sign up today, "
  + "limited offer, visit www.easy-cash-now.com";
const ORDINARY = "Thanks for the report, very helpful.";

async function outcome(promise) {
  try {
    return { ok: true, value: (await promise) ?? null };
  } catch (error) {
    return { ok: false, error: error instanceof Error ? error.message : String(error) };
  }
}

async function akismetApi() {
  const options = { blog, host: `localhost:${port}${path}`, protocol: "http", lang: "en", charset: "UTF-8" };
  const client = new AkismetClient({ ...options, key });
  const wrong = new AkismetClient({ ...options, key: "not-a-key" });
  const visitor = { ip: "203.0.113.7", useragent: "Mozilla/5.0 (X11; Linux x86_64)", referrer: `${blog}`,
    permalink: `${blog}story/1`, type: "comment", date: "2024-05-01T10:00:00Z" };
  return {
    verifyKey: await outcome(client.verifyKey()),
    verifyWrongKey: await outcome(wrong.verifyKey()),
    checkSpam: await outcome(client.checkSpam({ ...visitor, name: "Cash Guru", content: LINK_DROP })),
    checkHam: await outcome(client.checkSpam({ ...visitor, name: "Maria", email: "maria@example.org", content: ORDINARY })),
    checkWrongKey: await outcome(wrong.checkSpam({ ...visitor, content: ORDINARY })),
    checkGuaranteedSpam: await outcome(client.checkSpam({ ...visitor, name: "akismet-guaranteed-spam", content: ORDINARY })),
    checkAdministrator: await outcome(client.checkSpam({ ...visitor, role: "administrator", content: LINK_DROP, isTest: true })),
    checkHoneypot: await outcome(client.checkSpam({ ...visitor, content: ORDINARY, honeypot: "http://filled.by.a.bot/" })),
    checkEmptyHoneypot: await outcome(client.checkSpam({ ...visitor, content: ORDINARY, honeypot_field_name: "hp_url", hp_url: "" })),
    submitSpam: await outcome(client.submitSpam({ ...visitor, name: "E", content: "Cheap essays written for you, message me on telegram @essaypro99" })
      .then(res => res.text)),
    submitHam: await outcome(client.submitHam({ ...visitor, name: "J", content: "My cousin runs the bakery on Main Street and it closed last week, sad news." })
      .then(res => res.text)),
    submitTest: await outcome(client.submitSpam({ ...visitor, content: "node test only spam", isTest: true }).then(res => res.text)),
  };
}

async function cedx() {
  const site = new Blog({ url: blog, languages: ["en"], charset: "UTF-8" });
  const client = new Client(key, site, { baseUrl: base });
  const wrong = new Client("not-a-key", site, { baseUrl: base });
  const author = (fields = {}) => new Author({ ipAddress: "198.51.100.4", userAgent: "Mozilla/5.0", ...fields });
  const comment = (content, fields = {}) => new Comment({ content, author: author(fields), type: "comment",
    permalink: `${blog}story/2`, context: ["local news", "council"], date: new Date("2024-05-02T09:00:00Z") });
  const names = Object.fromEntries(Object.entries(CheckResult).map(([name, value]) => [value, name]));
  const check = c => client.checkComment(c).then(result => names[result]);
  return {
    verifyKey: await outcome(client.verifyKey()),
    verifyWrongKey: await outcome(wrong.verifyKey()),
    checkSpam: await outcome(check(comment(LINK_DROP, { name: "Cash Guru" }))),
    checkHam: await outcome(check(comment(ORDINARY, { name: "Maria" }))),
    checkRecheck: await outcome(check(new Comment({ content: ORDINARY, author: author(), recheckReason: "edit" }))),
    checkWrongKey: await outcome(wrong.checkComment(comment(ORDINARY))),
    submitSpam: await outcome(client.submitSpam(comment("Buy followers cheap, DM me on whatsapp +1 555 0100 now", { name: "F" }))),
    submitHam: await outcome(client.submitHam(comment("The council vote is on Tuesday, the agenda is on their site.", { name: "K" }))),
  };
}

const results = { akismetApi: await akismetApi(), cedx: await cedx() };
process.stdout.write(JSON.stringify(results) + "\n");
