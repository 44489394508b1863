"""Numba-compiled kernels behind :mod:`modclf.text` and :mod:`modclf.fast`.

Text arrives here as arrays of Unicode code points (``str.encode("utf-32-le")`` viewed as uint32),
so every loop over characters, n-grams and features runs as machine code instead of Python
bytecode. Character classes come from a table built from Python's own predicates
(:func:`modclf.text.char_flags`), which keeps ``\\w``, ``str.split()`` and ``str.isalpha`` semantics
exact. All functions are compiled with ``cache=True`` (compiled once per machine, then loaded from
``__pycache__``) and ``nogil=True`` (threads of the service score in parallel).

Vocabulary lookups use an open-addressing table keyed by a 64-bit hash; a hit is confirmed by
comparing the code points with the stored term, so hash collisions can never change a result.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Bits of the per-code-point flag table.
SPACE = 1  # str.isspace(): what str.split() splits on
WORD = 2  # regex \w in str patterns (str.isalnum() or "_")
ALPHA = 4  # str.isalpha()
UPPER = 8  # str.isupper()
IGNORABLE = 16  # modclf.text.IGNORABLE_RANGES (below the table size; U+E0000..U+E0FFF are checked in code)
MARK = 32  # modclf.text.MARK_RANGES: combining marks removed over Latin letters and digits
FOLD = 64  # a key of modclf.text.ALWAYS_FOLD (replaced everywhere)
LATIN = 128  # ASCII letter or digit (combining marks after one are removed)

#: Separators between spelled-out letters besides whitespace (see modclf.text.join_spelled).
SPELL_PUNCT = "-_.*·•|/+~,:"
_SPELL_PUNCT = np.array([ord(c) for c in SPELL_PUNCT], dtype=np.uint32)
#: Runs with fewer letters than this are left alone (a list of numbers, "1 - 2 - 3 - 4").
SPELLED_MIN_LETTERS = 4

#: Letters of the scripts with Latin look-alikes (Greek, Cyrillic, Armenian) lie in
#: [SCRIPT_FIRST, SCRIPT_FIRST + len(script_class)); script_class gives each one's class.
SCRIPT_FIRST = 0x0370
LOOKALIKE = 1  # a key of modclf.text.SCRIPT_FOLD
SCRIPT_OTHER = 2  # a letter of those scripts without a Latin look-alike

_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier, arithmetic mod 2**64
_SEED = np.uint64(0x84222325CBF29CE4)
_SALT = np.uint64(0xC2B2AE3D27D4EB4F)
_FMIX = np.uint64(0xFF51AFD7ED558CCD)
_S29 = np.uint64(29)
_S33 = np.uint64(33)


@njit(cache=True, nogil=True)
def _flag(flags: np.ndarray, c: np.uint32) -> int:
    return flags[c] if c < flags.size else 0


@njit(cache=True, nogil=True)
def _step(h: np.uint64, c: np.uint32) -> np.uint64:
    h = (h * _MULT) ^ np.uint64(c)
    return h ^ (h >> _S29)


@njit(cache=True, nogil=True)
def _final(h: np.uint64, n: int) -> np.uint64:
    k = h ^ (np.uint64(n) * _SALT)
    k ^= k >> _S33
    k *= _FMIX
    return k ^ (k >> _S33)


@njit(cache=True, nogil=True)
def finish_into(cp: np.ndarray, start: int, end: int, flags: np.ndarray, out: np.ndarray, o: int) -> int:
    """The last step of normalize_text on ``cp[start:end]``, written to ``out[o:]``; returns the end.

    Equals ``" ".join(re.sub(r"(.)\\1{2,}", r"\\1\\1", s, flags=re.S).split())``: every run of one
    repeated character is cut to two, then whitespace runs become one space, none at either end.
    The output is never longer than the input.
    """
    o0 = o
    pending = False
    i = start
    while i < end:
        c = cp[i]
        j = i + 1
        while j < end and cp[j] == c:
            j += 1
        if _flag(flags, c) & SPACE:
            pending = o > o0
        else:
            if pending:
                out[o] = 32
                o += 1
                pending = False
            out[o] = c
            o += 1
            if j - i >= 2:
                out[o] = c
                o += 1
        i = j
    return o


@njit(cache=True, nogil=True)
def finish_text(cp: np.ndarray, flags: np.ndarray) -> np.ndarray:
    out = np.empty(cp.size, dtype=np.uint32)
    n = finish_into(cp, 0, cp.size, flags, out, 0)
    return out[:n]


@njit(cache=True, nogil=True)
def count_letters(cp: np.ndarray, flags: np.ndarray) -> tuple[int, int]:
    """(letters, upper-case characters) as ``sum(map(str.isalpha, s)), sum(map(str.isupper, s))``."""
    letters = 0
    upper = 0
    for c in cp:
        f = _flag(flags, c)
        letters += (f & ALPHA) != 0
        upper += (f & UPPER) != 0
    return letters, upper


@njit(cache=True, nogil=True)
def _alnum(flags: np.ndarray, c: np.uint32) -> bool:
    """Regex ``[^\\W_]``: a word character other than the underscore (str.isalnum())."""
    return (_flag(flags, c) & WORD) != 0 and c != 95


@njit(cache=True, nogil=True)
def _script_class(script_class: np.ndarray, c: np.uint32) -> int:
    return script_class[c - SCRIPT_FIRST] if c >= SCRIPT_FIRST and c < SCRIPT_FIRST + script_class.size else 0


@njit(cache=True, nogil=True)
def clean_text(cp, flags, fold_keys, fold_starts, fold_pool, script_class, script_latin, out):  # type: ignore[no-untyped-def]
    """The cleaning of modclf.text.fold_unicode (steps 1-3 there) of ``cp`` into ``out``.

    ``fold_keys`` (sorted) are the ALWAYS_FOLD characters, replaced by
    ``fold_pool[fold_starts[k]:fold_starts[k + 1]]``; ``out`` is at least twice as long as ``cp``.
    ``script_class`` and ``script_latin`` describe the code points from SCRIPT_FIRST on. Returns
    the length of the result, or -1 when it equals ``cp``.
    """
    n_flags = flags.size
    changed = False
    lookalikes = False
    # 1. ignorables out, ALWAYS_FOLD in
    n = 0
    for c in cp:
        if c < n_flags:
            f = flags[c]
        elif c >= 0xE0000 and c <= 0xE0FFF:  # tag characters and variation selectors supplement
            changed = True
            continue
        else:
            f = 0
        if f & IGNORABLE:
            changed = True
            continue
        if f & FOLD:
            k = np.searchsorted(fold_keys, c)
            for j in range(fold_starts[k], fold_starts[k + 1]):
                out[n] = fold_pool[j]
                n += 1
            changed = True
            continue
        lookalikes |= _script_class(script_class, c) == LOOKALIKE
        out[n] = c
        n += 1
    # 2. look-alikes, per run of letters
    if lookalikes:
        starts = np.empty(n // 2 + 1, dtype=np.int64)
        ends = np.empty(n // 2 + 1, dtype=np.int64)
        latin_run = np.empty(n // 2 + 1, dtype=np.bool_)
        m = 0
        mixed = 0
        real = 0
        any_latin = False
        i = 0
        while i < n:
            if not (_flag(flags, out[i]) & ALPHA):
                i += 1
                continue
            j = i
            look = False
            other = False
            latin = False
            while j < n and _flag(flags, out[j]) & ALPHA:
                c = out[j]
                if c < 128:
                    latin = True
                else:
                    k = _script_class(script_class, c)
                    look |= k == LOOKALIKE
                    other |= k == SCRIPT_OTHER
                j += 1
            any_latin |= latin
            if other:
                real += 1
            elif look:
                mixed += latin
                starts[m] = i
                ends[m] = j
                latin_run[m] = latin
                m += 1
            i = j
        fold_all = mixed > real or (real == 0 and any_latin)
        for r in range(m):
            if latin_run[r] or fold_all:
                for i in range(starts[r], ends[r]):
                    c = out[i]
                    if _script_class(script_class, c) == LOOKALIKE:
                        out[i] = script_latin[c - SCRIPT_FIRST]
                        changed = True
    # 3. marks after ASCII letters and digits (in place)
    o = 0
    on_latin = False
    for i in range(n):
        c = out[i]
        f = flags[c] if c < n_flags else 0
        if on_latin and f & MARK:
            changed = True
            continue
        out[o] = c
        o += 1
        on_latin = (f & LATIN) != 0
    return o if changed else -1


@njit(cache=True, nogil=True)
def next_spelled_run(cp, flags: np.ndarray, start: int) -> int:  # type: ignore[no-untyped-def]
    """Where the next run of ``modclf.text._SPELLED`` with SPELLED_MIN_LETTERS letters starts, -1 if none.

    A run is 4+ single alphanumerics (no alphanumeric before or after each) where each is separated
    from the next by whitespace, or by optional whitespace, one SPELL_PUNCT character, optional
    whitespace. One pass from ``start`` (a position where no run is under way: 0, or the end of a
    run); runs are maximal, as the regex's greedy matches are. ``cp``: code points (uint32), or the
    bytes of an ASCII text.
    """
    punct = _SPELL_PUNCT
    n = len(cp)
    i = start
    before = i > 0 and _alnum(flags, cp[i - 1])  # cp[i - 1] is alphanumeric
    here = i < n and _alnum(flags, cp[i])
    while i < n:
        after = i + 1 < n and _alnum(flags, cp[i + 1])
        if not here or before or after:
            before, here = here, after
            i += 1
            continue
        singles = 1  # cp[i] is a single: follow the run
        letters = 1 if _flag(flags, cp[i]) & ALPHA else 0
        j = i + 1  # just after the last single of the run
        while True:
            k = j
            while k < n and _flag(flags, cp[k]) & SPACE:
                k += 1
            if k < n and not (k > j and _alnum(flags, cp[k])):
                is_punct = False
                for p in punct:
                    if cp[k] == p:
                        is_punct = True
                        break
                if not is_punct:
                    break
                k += 1
                while k < n and _flag(flags, cp[k]) & SPACE:
                    k += 1
            if k >= n or not _alnum(flags, cp[k]) or (k + 1 < n and _alnum(flags, cp[k + 1])):
                break
            singles += 1
            if _flag(flags, cp[k]) & ALPHA:
                letters += 1
            j = k + 1
        if singles >= 4 and letters >= SPELLED_MIN_LETTERS:
            return i
        i = j  # cp[j - 1] is the run's last single; cp[j] is not alphanumeric
        before, here = True, False
    return -1


@njit(cache=True, nogil=True)
def hash_terms(pool: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    out = np.empty(starts.size, dtype=np.uint64)
    for t in range(starts.size):
        h = _SEED
        for j in range(starts[t], starts[t] + lengths[t]):
            h = _step(h, pool[j])
        out[t] = _final(h, lengths[t])
    return out


@njit(cache=True, nogil=True)
def code_terms(pool: np.ndarray, starts: np.ndarray, lengths: np.ndarray, codes: np.ndarray, bits: int) -> np.ndarray:
    """Exact keys: the terms' character codes (all >= 1) packed ``bits`` bits each."""
    out = np.empty(starts.size, dtype=np.uint64)
    for t in range(starts.size):
        k = np.uint64(0)
        for j in range(starts[t], starts[t] + lengths[t]):
            k = (k << np.uint64(bits)) | np.uint64(codes[pool[j]])
        out[t] = k
    return out


@njit(cache=True, nogil=True)
def _slot(key: np.uint64, mask: np.uint64) -> np.uint64:
    k = key * _MULT
    return (k ^ (k >> np.uint64(32))) & mask


@njit(cache=True, nogil=True)
def build_table(keys: np.ndarray, size: int, first: int = 0) -> np.ndarray:
    """Open-addressing table with linear probing; ``size`` a power of two.

    Slot s is ``tab[2s]`` = key, ``tab[2s+1]`` = 1 + ``first`` + index into ``keys`` (0: empty), side by
    side so a probe touches one cache line.
    """
    tab = np.zeros(2 * size, dtype=np.uint64)
    mask = np.uint64(size - 1)
    for t in range(keys.size):
        slot = _slot(keys[t], mask)
        while tab[2 * slot + 1] != 0:
            slot = (slot + np.uint64(1)) & mask
        tab[2 * slot] = keys[t]
        tab[2 * slot + 1] = first + t + 1
    return tab


@njit(cache=True, nogil=True)
def _find(tab: np.ndarray, key: np.uint64) -> int:
    """Index of an exact key, -1 when absent."""
    mask = np.uint64(tab.size // 2 - 1)
    slot = _slot(key, mask)
    while True:
        v = tab[2 * slot + 1]
        if v == 0:
            return -1
        if tab[2 * slot] == key:
            return np.int64(v) - 1
        slot = (slot + np.uint64(1)) & mask


@njit(cache=True, nogil=True)
def _find_text(tab, pool, starts, lengths, key, buf, s, n) -> int:  # type: ignore[no-untyped-def]
    """Index of the term equal to ``buf[s:s+n]`` whose hash is ``key``, -1 when not in the vocabulary."""
    mask = np.uint64(tab.size // 2 - 1)
    slot = _slot(key, mask)
    while True:
        v = tab[2 * slot + 1]
        if v == 0:
            return -1
        t = np.int64(v) - 1
        if tab[2 * slot] == key and lengths[t] == n:
            p = starts[t]
            same = True
            for j in range(n):
                if pool[p + j] != buf[s + j]:
                    same = False
                    break
            if same:
                return t
        slot = (slot + np.uint64(1)) & mask


@njit(cache=True, nogil=True)
def _emit(counts, touched, nt, rec, sublinear, log_tf, z, d, acc) -> None:  # type: ignore[no-untyped-def]
    """Add one TF-IDF block's contribution to ``z[d]``: sum(tf * idf * coef) / ||tf * idf||.

    ``rec[f]`` is ``[idf, idf * coef[0, f], idf * coef[1, f], ...]`` (one cache line per feature);
    ``log_tf[c]`` is ``1 + log(c)`` for small counts, computed by NumPy as scikit-learn does.
    """
    k_n = z.shape[1]
    for k in range(k_n):
        acc[k] = 0.0
    sq = 0.0
    for i in range(nt):
        f = touched[i]
        c = counts[f]
        counts[f] = 0
        if not sublinear:
            tf = float(c)
        elif c < log_tf.size:
            tf = log_tf[c]
        else:
            tf = 1.0 + np.log(float(c))
        v = tf * rec[f, 0]
        sq += v * v
        for k in range(k_n):
            acc[k] += tf * rec[f, k + 1]
    if sq > 0.0:
        norm = np.sqrt(sq)
        for k in range(k_n):
            z[d, k] += acc[k] / norm


@njit(cache=True, nogil=True)
def _windows(buf, a, b, char, ids) -> int:  # type: ignore[no-untyped-def]
    """Vocabulary ids of the ``char_wb`` n-grams of the padded word ``buf[a:b+1]`` into ``ids``; returns how many.

    Every window of min_n..max_n characters (a padded word is at least 3 long and min_n <= 3, so
    sklearn's "short word counted once" case is a window too). Windows are keyed exactly by their
    characters' codes when those fit in 64 bits (``bits > 0``), else by hash with the match
    confirmed against the stored term. The most frequent terms are in a small table probed first
    (it stays in cache). With a prefix-closed vocabulary (``closed``: every prefix of a term that is
    min_n long or more is a term, as min_df/max_df selection guarantees) a window that is not a term
    ends its row of windows; so does a character that no term contains.
    """
    (c_hot, c_tab, c_pool, c_starts, c_lens, codes, bits, closed, min_n, max_n) = char[:10]
    ubits = np.uint64(max(bits, 0))
    m = 0
    for off in range(a, b + 1):
        h = _SEED
        last = min(max_n, b + 1 - off)
        for n in range(1, last + 1):
            c = buf[off + n - 1]
            if bits > 0:
                code = codes[c] if c < codes.size else 0
                if code == 0:
                    break
                h = (h << ubits) | np.uint64(code) if n > 1 else np.uint64(code)
            else:
                h = _step(h, c)
            if n >= min_n:
                if bits > 0:
                    t = _find(c_hot, h)
                    if t < 0:
                        t = _find(c_tab, h)
                else:
                    k = _final(h, n)
                    t = _find_text(c_hot, c_pool, c_starts, c_lens, k, buf, off, n)
                    if t < 0:
                        t = _find_text(c_tab, c_pool, c_starts, c_lens, k, buf, off, n)
                if t >= 0:
                    ids[m] = t
                    m += 1
                elif closed:
                    break
    return m


@njit(cache=True, nogil=True)
def token_ngrams(w_pool, w_starts, w_lens, char):  # type: ignore[no-untyped-def]
    """For every word token, the ids of the ``char_wb`` n-grams of the token as a whole word.

    Most words of a text are single known tokens, so the kernel takes their n-grams from here
    (one sequential read) instead of probing the n-gram table once per window.
    """
    n_tok = w_starts.size
    longest = 0
    for t in range(n_tok):
        longest = max(longest, w_lens[t])
    buf = np.empty(longest + 2, dtype=np.uint32)
    ids = np.empty((longest + 2) * 8, dtype=np.int64)  # max_n <= 8 (checked when the block is built)
    off = np.zeros(n_tok + 1, dtype=np.int64)
    out = np.empty(0, dtype=np.int32)
    for rep in range(2):  # count, then fill
        total = 0
        for t in range(n_tok):
            n = w_lens[t]
            buf[0] = 32
            for j in range(n):
                buf[1 + j] = w_pool[w_starts[t] + j]
            buf[n + 1] = 32
            m = _windows(buf, 0, n + 1, char, ids)
            if rep == 1:
                for j in range(m):
                    out[total + j] = ids[j]
            total += m
            off[t + 1] = total
        if rep == 0:
            out = np.empty(total, dtype=np.int32)
    return off, out


def new_scratch(word: tuple, char: tuple) -> tuple:
    """Work arrays for :func:`score_batch`: counts per feature (zero) and distinct-feature lists."""
    n_word, n_char = word[-1].shape[0], char[11].shape[0]
    return (np.zeros(n_word, dtype=np.int32), np.zeros(n_char, dtype=np.int32),
            np.empty(n_word, dtype=np.int64), np.empty(n_char, dtype=np.int64))


@njit(cache=True, nogil=True)
def score_batch(cp, lengths, flags, log_tf, intercept, word, char, scratch, proba, z):  # type: ignore[no-untyped-def]
    """Logits (``proba``: probabilities, softmax of the logits) of each document into ``z``.

    Document d is ``cp[sum(lengths[:d]):sum(lengths[:d+1])]``. Everything per call happens here,
    so that scoring one comment costs one dispatch and no NumPy calls on tiny arrays.

    ``scratch`` is :func:`new_scratch` of the same blocks, used by one thread at a time.

    Each document is first finished like normalize_text (see :func:`finish_into`), then:

    - word block: tokens are maximal runs of \\w characters plus single "?" and "!" (the pattern
      ``\\b\\w+\\b|[?!]``), unigrams and bigrams of consecutive tokens looked up in the vocabulary;
    - char block: sklearn's ``char_wb`` n-grams of each space-separated word padded with one space
      on both sides (:func:`_windows`); a word that is exactly one known token takes its n-grams
      from the precomputed :func:`token_ngrams` lists;
    - per block, sublinear tf, the l2 norm of tf * idf and the dot product with idf * coef.
    """
    (w_tab, w_pool, w_starts, w_lens, w_uni, p_tab, p_feat, n_tok, w_sub, w_rec) = word
    c_sub, c_rec, tok_off, tok_ids = char[10:]
    min_n, max_n = char[8], char[9]
    cached = tok_off.size == n_tok + 1 and n_tok > 0
    n_docs = lengths.size
    longest = 0
    for d in range(n_docs):
        longest = max(longest, lengths[d])
    buf = np.empty(longest + 2, dtype=np.uint32)
    # per-feature counts (all zero on entry, and left zero) and the distinct features of one
    # document: reused across calls (allocating them per call costs more than scoring one comment)
    w_counts, c_counts, w_touched, c_touched = scratch
    acc = np.empty(z.shape[1])
    ids = np.empty((longest + 2) * max(1, max_n - min_n + 1), dtype=np.int64)
    run_tok = np.empty(longest + 2, dtype=np.int64)  # token id and end of the \w run starting at i
    run_end = np.empty(longest + 2, dtype=np.int64)
    k_n = z.shape[1]
    start = 0
    for d in range(n_docs):
        for k in range(k_n):
            z[d, k] = intercept[k]
        # buf = " " + finished text + " ": every word sits between two spaces, as char_wb pads it
        buf[0] = 32
        end = finish_into(cp, start, start + lengths[d], flags, buf, 1)
        start += lengths[d]
        buf[end] = 32
        # ---- words
        nt = 0
        prev = -1
        i = 1
        while i < end:
            c = buf[i]
            if _flag(flags, c) & WORD:
                j = i
                h = _SEED
                while j < end and _flag(flags, buf[j]) & WORD:
                    h = _step(h, buf[j])
                    j += 1
            elif c == 63 or c == 33:  # "?" "!"
                j = i + 1
                h = _step(_SEED, c)
            else:
                i += 1
                continue
            tok = _find_text(w_tab, w_pool, w_starts, w_lens, _final(h, j - i), buf, i, j - i)
            run_tok[i] = tok
            run_end[i] = j
            if tok >= 0:
                f = w_uni[tok]
                if f >= 0:
                    if w_counts[f] == 0:
                        w_touched[nt] = f
                        nt += 1
                    w_counts[f] += 1
                if prev >= 0:
                    p = _find(p_tab, np.uint64(prev) * np.uint64(n_tok) + np.uint64(tok))
                    if p >= 0:
                        f = p_feat[p]
                        if w_counts[f] == 0:
                            w_touched[nt] = f
                            nt += 1
                        w_counts[f] += 1
            prev = tok
            i = j
        _emit(w_counts, w_touched, nt, w_rec, w_sub, log_tf, z, d, acc)
        # ---- character n-grams within padded words
        nt = 0
        a = 0  # the padded word is buf[a:b+1]
        while a < end - 1:
            b = a + 1
            while buf[b] != 32:
                b += 1
            tok = -1
            if cached and _flag(flags, buf[a + 1]) & WORD and run_end[a + 1] == b:
                tok = run_tok[a + 1]  # the whole word is one \w run, and a known token
            if tok >= 0:
                first, m = tok_off[tok], tok_off[tok + 1] - tok_off[tok]
                for j in range(m):
                    ids[j] = tok_ids[first + j]
            else:
                first, m = 0, _windows(buf, a, b, char, ids)
            for j in range(m):  # (counting written out: a helper call per n-gram costs 4x)
                t = ids[j]
                if c_counts[t] == 0:
                    c_touched[nt] = t
                    nt += 1
                c_counts[t] += 1
            a = b
        _emit(c_counts, c_touched, nt, c_rec, c_sub, log_tf, z, d, acc)
        if proba:
            top = z[d, 0]
            for k in range(1, k_n):
                top = max(top, z[d, k])
            total = 0.0
            for k in range(k_n):
                z[d, k] = np.exp(z[d, k] - top)
                total += z[d, k]
            for k in range(k_n):
                z[d, k] /= total
