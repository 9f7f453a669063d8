/* siprouter.sip._scan: the header-line index of a SIP message and the common Via form, in C.
 *
 * index_headers(block, entries[, start, end]) does what siprouter.sip.message._fast_headers
 * does, with the same result, in one pass over the bytes and without a Python call per line:
 *
 *   block    the header section after the start line, decoded as latin-1 (one code point per
 *            byte), each line ended by CRLF; with start and end, block[start:end] is (the
 *            message's text need not be cut out first);
 *   entries  the parser's dict: header name as written -> (canonical name, written name).
 *
 * It returns a list with one [canonical name, value, line, written name] list per line, where
 * `line` is the line without its CRLF, or None when it is exactly written name + ": " + value
 * (what the serializer writes from those two, so no copy of the line is made), and `value` the
 * text after the first colon with ASCII whitespace trimmed; or None when any line does not fit the common case (a bare LF, a line
 * without a colon or starting with one, a name not in `entries`, which includes every folded
 * line) - the caller then takes the line-by-line parser, which also gives the errors. A str
 * that is not one byte per code point also gives None.
 *
 * Names are looked up by their bytes in a table that mirrors `entries` (names_find), so no str
 * is made and hashed per line. The parser only ever adds names to `entries` (and replaces no
 * value): the table catches up with the names added since it last looked, and is built again
 * when given another dict or one that got smaller.
 *
 * via_parm(text) reads the common form of one Via value the same way (see below).
 *
 * memo_key(text) gives the key under which validation remembers its verdict on a From, To,
 * Route or Record-Route value (see below).
 *
 * via_branch(value) and cseq(value, methods) read the top Via's branch and a CSeq as
 * SipMessage does in Python (see below).
 *
 * values_hash(first, second, hdrs, names) hashes two strings and the values of the named
 * header lines, for the proxy's loop detection (see below).
 *
 * serialize(first, hdrs, body, display) writes a message out as SipMessage.to_bytes does in
 * Python (see below), into one bytes object sized in a first pass; with three more arguments,
 * a response to it as siprouter.sip.build writes one.
 *
 * uri_parts(text) and name_addr_parts(text) read the common form of a sip: or sips: URI and of
 * a name-addr as siprouter.sip.uri and siprouter.sip.headers do, tag_of(value) the tag of a
 * From/To value as siprouter.sip.message does (see below).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* the whitespace str.strip(_WIRE_WS) trims in message.py: " \t\r\n\v\f" and 0x1c-0x1f */
static inline int wire_ws(Py_UCS1 c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == 0x0b || c == 0x0c
        || (c >= 0x1c && c <= 0x1f);
}

static PyObject *empty_str; /* "" (made at import) */

/* 0 when `o` is a str, made ready; else -1 with TypeError `sig` (or the error of READY) set */
static int ready_str(PyObject *o, const char *sig) {
    if (!PyUnicode_Check(o)) {
        PyErr_SetString(PyExc_TypeError, sig);
        return -1;
    }
    return PyUnicode_READY(o) < 0 ? -1 : 0;
}

/* the name table: open addressing, at most half full; each slot holds a strong reference to
 * a key of `entries` (a str of one byte per code point) and to its value */
typedef struct {
    PyObject *key; /* NULL: empty slot */
    PyObject *ent;
    Py_ssize_t len;
    Py_uhash_t hash;
} name_slot;

static name_slot *names;
static size_t names_mask;      /* slots - 1 (a power of two minus one); 0: no table yet */
static PyObject *names_dict;   /* the dict mirrored (strong reference) */
static Py_ssize_t names_pos;   /* PyDict_Next position reached in names_dict */
static Py_ssize_t names_seen;  /* entries of names_dict mirrored */

static inline Py_uhash_t name_hash(const Py_UCS1 *p, Py_ssize_t n) {
    Py_uhash_t h = 1469598103934665603ULL; /* FNV-1a */
    for (Py_ssize_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static void names_clear(void) {
    for (size_t i = 0; names != NULL && i <= names_mask; i++) {
        Py_XDECREF(names[i].key);
        Py_XDECREF(names[i].ent);
    }
    PyMem_Free(names);
    names = NULL;
    names_mask = 0;
    Py_CLEAR(names_dict);
    names_pos = names_seen = 0;
}

static void names_put(name_slot *tab, size_t mask, name_slot item) {
    size_t i = (size_t)item.hash & mask;
    while (tab[i].key != NULL)
        i = (i + 1) & mask;
    tab[i] = item;
}

/* bring the table up to date with `entries`; -1 with MemoryError set on failure */
static int names_sync(PyObject *entries) {
    Py_ssize_t size = PyDict_GET_SIZE(entries);
    if (entries != names_dict || size < names_seen) {
        names_clear();
        Py_INCREF(entries);
        names_dict = entries;
    }
    if (size == names_seen && names != NULL)
        return 0;
    size_t need = 64;
    while (need < 2 * (size_t)size + 2)
        need <<= 1;
    if (names == NULL || need > names_mask + 1) { /* a larger table: move the slots over */
        name_slot *tab = PyMem_Calloc(need, sizeof(name_slot));
        if (tab == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (size_t i = 0; names != NULL && i <= names_mask; i++)
            if (names[i].key != NULL)
                names_put(tab, need - 1, names[i]);
        PyMem_Free(names);
        names = tab;
        names_mask = need - 1;
    }
    PyObject *key, *value;
    while (PyDict_Next(entries, &names_pos, &key, &value)) {
        names_seen++;
        if (!PyUnicode_Check(key) || PyUnicode_READY(key) < 0
            || PyUnicode_KIND(key) != PyUnicode_1BYTE_KIND) {
            PyErr_Clear();
            continue; /* cannot be the bytes of a latin-1 line */
        }
        name_slot item;
        item.len = PyUnicode_GET_LENGTH(key);
        item.hash = name_hash(PyUnicode_1BYTE_DATA(key), item.len);
        Py_INCREF(key);
        Py_INCREF(value);
        item.key = key;
        item.ent = value;
        names_put(names, names_mask, item);
    }
    return 0;
}

/* the value of `entries` for the name s[0:n] (borrowed), or NULL */
static inline PyObject *names_find(const Py_UCS1 *s, Py_ssize_t n) {
    Py_uhash_t h = name_hash(s, n);
    size_t i = (size_t)h & names_mask;
    while (names[i].key != NULL) {
        if (names[i].hash == h && names[i].len == n
            && memcmp(PyUnicode_1BYTE_DATA(names[i].key), s, (size_t)n) == 0)
            return names[i].ent;
        i = (i + 1) & names_mask;
    }
    return NULL;
}

/* the entries of the header lines block[pos:n] (s its one-byte data) appended to `out`, as
 * index_headers makes them, with the name table in step with its dict: 1, or 0 when some line
 * does not fit (the caller declines), or -1 with an exception set */
static int index_lines(PyObject *block, const Py_UCS1 *s, Py_ssize_t pos, Py_ssize_t n,
                       PyObject *out) {
    while (pos < n) {
        const Py_UCS1 *nl = memchr(s + pos, '\n', (size_t)(n - pos));
        if (nl == NULL)
            return 0; /* the last line has no line end */
        Py_ssize_t lf = nl - s;
        if (lf == pos || s[lf - 1] != '\r')
            return 0; /* a bare LF (an empty line cannot be inside the block either) */
        Py_ssize_t end = lf - 1; /* the line is s[pos:end] */
        const Py_UCS1 *colon_p = memchr(s + pos, ':', (size_t)(end - pos));
        if (colon_p == NULL || colon_p == s + pos)
            return 0;
        Py_ssize_t colon = colon_p - s;
        PyObject *ent = names_find(s + pos, colon - pos); /* borrowed */
        if (ent == NULL)
            return 0; /* a new name, or a folded line */
        if (!PyTuple_Check(ent) || PyTuple_GET_SIZE(ent) != 2)
            return 0;
        Py_ssize_t vs = colon + 1, ve = end;
        while (vs < ve && wire_ws(s[vs]))
            vs++;
        while (ve > vs && wire_ws(s[ve - 1]))
            ve--;
        PyObject *value = PyUnicode_Substring(block, vs, ve);
        if (value == NULL)
            return -1;
        PyObject *canonical = PyTuple_GET_ITEM(ent, 0), *written = PyTuple_GET_ITEM(ent, 1);
        PyObject *line;
        if (vs == colon + 2 && s[colon + 1] == ' ' && ve == end && PyUnicode_Check(written)
            && PyUnicode_GET_LENGTH(written) == colon - pos) {
            /* "Name: value" exactly as the serializer writes an entry from its written name
             * and value: no copy of the line */
            line = Py_None;
            Py_INCREF(line);
        } else if ((line = PyUnicode_Substring(block, pos, end)) == NULL) {
            Py_DECREF(value);
            return -1;
        }
        PyObject *item = PyList_New(4);
        if (item == NULL) {
            Py_DECREF(value);
            Py_DECREF(line);
            return -1;
        }
        Py_INCREF(canonical);
        Py_INCREF(written);
        PyList_SET_ITEM(item, 0, canonical);
        PyList_SET_ITEM(item, 1, value);
        PyList_SET_ITEM(item, 2, line);
        PyList_SET_ITEM(item, 3, written);
        int rc = PyList_Append(out, item);
        Py_DECREF(item);
        if (rc < 0)
            return -1;
        pos = lf + 1;
    }
    return 1;
}

static PyObject *index_headers(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2 && nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "index_headers(block, entries[, start, end]) takes 2 or 4 arguments");
        return NULL;
    }
    PyObject *block = args[0], *entries = args[1];
    static const char sig[] = "index_headers(block: str, entries: dict[, start: int, end: int])";
    if (!PyDict_Check(entries)) {
        PyErr_SetString(PyExc_TypeError, sig);
        return NULL;
    }
    if (ready_str(block, sig) < 0)
        return NULL;
    Py_ssize_t pos = 0, n = PyUnicode_GET_LENGTH(block);
    if (nargs == 4) {
        Py_ssize_t a = PyLong_AsSsize_t(args[2]), b;
        if (a == -1 && PyErr_Occurred())
            return NULL;
        b = PyLong_AsSsize_t(args[3]);
        if (b == -1 && PyErr_Occurred())
            return NULL;
        if (a < 0 || b < a || b > n) {
            PyErr_SetString(PyExc_ValueError, "index_headers: start and end out of range");
            return NULL;
        }
        pos = a;
        n = b;
    }
    if (PyUnicode_KIND(block) != PyUnicode_1BYTE_KIND)
        Py_RETURN_NONE;
    if (names_sync(entries) < 0)
        return NULL;
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(block);
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    int rc = index_lines(block, s, pos, n, out);
    if (rc > 0)
        return out;
    Py_DECREF(out);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}


/* head(text, start, entries): what siprouter.sip.message.parse_message reads of a message
 * whose text (decoded as latin-1) starts at `start`, for the common case, in one call:
 *
 *   (first line, method, Request-URI or reason phrase, status, entries, where the header lines
 *    start, where the body starts, Content-Length, whether the header section is ASCII)
 *
 * method "" and status 100-999 for a response, status 0 for a request; Content-Length -1 when
 * there is none. The common case: CRLF CRLF ends the header section; the start line, ended by
 * CRLF, is "SIP/2.0 ddd[ reason]" (first digit not 0) or "METHOD SP uri SP SIP/2.0" with one
 * of the methods in METHODS and a URI not starting with '<'; the header lines as index_headers
 * reads them; at most one Content-Length value (repeats of it allowed), of 1 to 10 ASCII
 * digits. None for anything else: the Python parser then reads the message, and gives the
 * errors. */
static const char *const METHODS[] = {"INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS",
                                      "PRACK", "UPDATE", "INFO", "MESSAGE", "SUBSCRIBE",
                                      "NOTIFY", "REFER", "PUBLISH"};
#define N_METHODS (sizeof(METHODS) / sizeof(METHODS[0]))
static PyObject *method_str[N_METHODS];

/* the canonical name "content-length" */
static inline int is_content_length(PyObject *canon) {
    return PyUnicode_Check(canon) && PyUnicode_KIND(canon) == PyUnicode_1BYTE_KIND
        && PyUnicode_GET_LENGTH(canon) == 14
        && memcmp(PyUnicode_1BYTE_DATA(canon), "content-length", 14) == 0;
}

static PyObject *head(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    static const char sig[] = "head(text: str, start: int, entries: dict)";
    if (nargs != 3 || !PyLong_Check(args[1]) || !PyDict_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, sig);
        return NULL;
    }
    PyObject *text = args[0];
    if (ready_str(text, sig) < 0)
        return NULL;
    Py_ssize_t start = PyLong_AsSsize_t(args[1]), n = PyUnicode_GET_LENGTH(text);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    if (start < 0 || start > n) {
        PyErr_SetString(PyExc_ValueError, "head: start out of range");
        return NULL;
    }
    if (PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND)
        Py_RETURN_NONE;
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(text);
    /* the first CRLF CRLF */
    Py_ssize_t end = -1;
    for (Py_ssize_t i = start; i + 3 < n;) {
        const Py_UCS1 *cr = memchr(s + i, '\r', (size_t)(n - 3 - i));
        if (cr == NULL)
            break;
        Py_ssize_t k = cr - s;
        if (s[k + 1] == '\n' && s[k + 2] == '\r' && s[k + 3] == '\n') {
            end = k;
            break;
        }
        i = k + 1;
    }
    if (end < 0)
        Py_RETURN_NONE;
    Py_ssize_t head_end = end + 2, body_at = end + 4;
    const Py_UCS1 *lf = memchr(s + start, '\n', (size_t)(head_end - start));
    Py_ssize_t fl_end = lf - s; /* lf is found: head_end - 1 is a LF */
    if (fl_end == start || s[fl_end - 1] != '\r')
        Py_RETURN_NONE;
    Py_ssize_t fe = fl_end - 1; /* the start line is s[start:fe] */
    PyObject *method = NULL;
    Py_ssize_t ts, te; /* the Request-URI or the reason phrase */
    long status = 0;
    if (fe - start >= 11 && memcmp(s + start, "SIP/2.0 ", 8) == 0) {
        const Py_UCS1 *d = s + start + 8;
        if (d[0] < '1' || d[0] > '9' || d[1] < '0' || d[1] > '9' || d[2] < '0' || d[2] > '9')
            Py_RETURN_NONE;
        status = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
        if (start + 11 == fe) {
            ts = te = fe;
        } else if (d[3] == ' ') {
            ts = start + 12;
            te = fe;
        } else {
            Py_RETURN_NONE;
        }
    } else {
        const Py_UCS1 *sp = memchr(s + start, ' ', (size_t)(fe - start));
        if (sp == NULL)
            Py_RETURN_NONE;
        Py_ssize_t me = sp - s;
        for (size_t m = 0; m < N_METHODS; m++) {
            if ((Py_ssize_t)strlen(METHODS[m]) == me - start
                && memcmp(s + start, METHODS[m], (size_t)(me - start)) == 0) {
                method = method_str[m];
                break;
            }
        }
        if (method == NULL)
            Py_RETURN_NONE; /* another method: a token or not, the Python parser decides */
        ts = me + 1;
        sp = memchr(s + ts, ' ', (size_t)(fe - ts));
        if (sp == NULL)
            Py_RETURN_NONE;
        te = sp - s;
        if (te == ts || s[ts] == '<' || fe - (te + 1) != 7 || memcmp(s + te + 1, "SIP/2.0", 7) != 0)
            Py_RETURN_NONE;
    }
    if (names_sync(args[2]) < 0)
        return NULL;
    PyObject *hdrs = PyList_New(0);
    if (hdrs == NULL)
        return NULL;
    int rc = index_lines(text, s, fl_end + 1, head_end, hdrs);
    if (rc <= 0) {
        Py_DECREF(hdrs);
        if (rc < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    long cl = -1;
    PyObject *cl_value = NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(hdrs); i++) {
        PyObject *h = PyList_GET_ITEM(hdrs, i);
        if (!is_content_length(PyList_GET_ITEM(h, 0)))
            continue;
        PyObject *v = PyList_GET_ITEM(h, 1);
        if (cl_value != NULL) {
            if (PyUnicode_Compare(v, cl_value) != 0)
                goto decline; /* conflicting values: the Python parser answers 400 */
            continue;
        }
        Py_ssize_t len = PyUnicode_GET_LENGTH(v);
        const Py_UCS1 *dv = PyUnicode_1BYTE_DATA(v);
        if (len < 1 || len > 10)
            goto decline;
        cl = 0;
        for (Py_ssize_t k = 0; k < len; k++) {
            if (dv[k] < '0' || dv[k] > '9')
                goto decline;
            cl = cl * 10 + (dv[k] - '0');
        }
        cl_value = v;
    }
    int ascii = PyUnicode_IS_ASCII(text);
    if (!ascii) {
        ascii = 1;
        for (Py_ssize_t i = fl_end + 1; i < head_end; i++) {
            if (s[i] >= 0x80) {
                ascii = 0;
                break;
            }
        }
    }
    PyObject *out = PyTuple_New(9);
    if (out == NULL) {
        Py_DECREF(hdrs);
        return NULL;
    }
    PyTuple_SET_ITEM(out, 4, hdrs); /* the tuple owns it from here */
    PyObject *items[9] = {
        PyUnicode_Substring(text, start, fe),
        method != NULL ? Py_NewRef(method) : Py_NewRef(empty_str),
        PyUnicode_Substring(text, ts, te),
        PyLong_FromLong(status),
        NULL,
        PyLong_FromSsize_t(fl_end + 1),
        PyLong_FromSsize_t(body_at),
        PyLong_FromLong(cl),
        Py_NewRef(ascii ? Py_True : Py_False),
    };
    int failed = 0;
    for (int k = 0; k < 9; k++) {
        if (k == 4)
            continue;
        if (items[k] == NULL)
            failed = 1;
        else
            PyTuple_SET_ITEM(out, k, items[k]);
    }
    if (failed) {
        Py_DECREF(out); /* the items set; the tuple's empty slots are NULL, which it skips */
        return NULL;
    }
    return out;
decline:
    Py_DECREF(hdrs);
    Py_RETURN_NONE;
}

/* via_parm(text): the common form of one via-parm, ``SIP/2.0/UDP host[:port];k[=v]...`` with
 * no LWS and no quoted value, as siprouter.sip.headers._fast_via reads it: returns
 * (transport in upper case, host, port or None, params) or None for anything else (the full
 * parser then decides, and gives the error). Parameter keys are lower-cased, values kept as
 * written, a key without '=' maps to None; a ttl must be a number up to 255 and a branch must
 * have a value. */

static const char *const TRANSPORTS[] = {"UDP", "TCP", "TLS", "SCTP", "TLS-SCTP", "WS", "WSS"};
#define N_TRANSPORTS (sizeof(TRANSPORTS) / sizeof(TRANSPORTS[0]))
static PyObject *transport_str[N_TRANSPORTS];

/* the Via parameter names nearly every Via carries, and those of From/To/Contact, as interned
 * str (their hash kept): a params dict takes these instead of a new str per parameter */
static const char *const PARAM_KEYS[] = {"branch", "rport", "received", "ttl", "maddr", "alias",
                                         "tag", "expires", "q"};
enum { KEY_BRANCH, KEY_RPORT, KEY_RECEIVED, KEY_TTL, KEY_MADDR, KEY_ALIAS };
#define N_PARAM_KEYS (sizeof(PARAM_KEYS) / sizeof(PARAM_KEYS[0]))
static PyObject *param_key[N_PARAM_KEYS];

/* the interned key for the name s[0:n] in any case (borrowed), or NULL */
static PyObject *known_key(const Py_UCS1 *s, Py_ssize_t n) {
    for (size_t k = 0; k < N_PARAM_KEYS; k++) {
        const char *name = PARAM_KEYS[k];
        if ((Py_ssize_t)strlen(name) != n)
            continue;
        Py_ssize_t i = 0;
        while (i < n && Py_TOLOWER(s[i]) == (Py_UCS1)name[i])
            i++;
        if (i == n)
            return param_key[k];
    }
    return NULL;
}

/* a str of s[0:n] in lower case (ASCII) */
static PyObject *lower_str(const Py_UCS1 *s, Py_ssize_t n) {
    PyObject *o = PyUnicode_New(n, 127);
    if (o == NULL)
        return NULL;
    Py_UCS1 *d = PyUnicode_1BYTE_DATA(o);
    for (Py_ssize_t i = 0; i < n; i++)
        d[i] = (Py_UCS1)Py_TOLOWER(s[i]);
    return o;
}

/* whether s[pos:n] is ";name[=value]" parameters up to the end (or nothing): each name one or
 * more key_ok characters, each value after an '=' one or more val_ok characters */
static int params_ok(const Py_UCS1 *s, Py_ssize_t pos, Py_ssize_t n,
                     const unsigned char *key_ok, const unsigned char *val_ok) {
    while (pos < n) {
        if (s[pos] != ';')
            return 0;
        Py_ssize_t ks = ++pos;
        while (pos < n && key_ok[s[pos]])
            pos++;
        if (pos == ks)
            return 0;
        if (pos < n && s[pos] == '=') {
            Py_ssize_t vs = ++pos;
            while (pos < n && val_ok[s[pos]])
                pos++;
            if (pos == vs)
                return 0;
        }
    }
    return 1;
}

/* the parameters params_ok accepted in text[pos:n] (s its one-byte data), as a new dict: names
 * in lower case (the interned str of a known one), values as written, None for a name without
 * '='; the last of a name kept. NULL with an exception set when something cannot be made. */
static PyObject *params_dict(PyObject *text, const Py_UCS1 *s, Py_ssize_t pos, Py_ssize_t n,
                             const unsigned char *key_ok, const unsigned char *val_ok) {
    PyObject *params = PyDict_New();
    if (params == NULL)
        return NULL;
    while (pos < n) { /* s[pos] == ';' */
        Py_ssize_t ks = ++pos;
        while (pos < n && key_ok[s[pos]])
            pos++;
        Py_ssize_t ke = pos;
        PyObject *value;
        if (pos < n && s[pos] == '=') {
            Py_ssize_t vs = ++pos;
            while (pos < n && val_ok[s[pos]])
                pos++;
            value = PyUnicode_Substring(text, vs, pos);
            if (value == NULL)
                goto error;
        } else {
            value = Py_None;
            Py_INCREF(value);
        }
        PyObject *key = known_key(s + ks, ke - ks);
        if (key != NULL)
            Py_INCREF(key);
        else if ((key = lower_str(s + ks, ke - ks)) == NULL) {
            Py_DECREF(value);
            goto error;
        }
        int rc = PyDict_SetItem(params, key, value);
        Py_DECREF(key);
        Py_DECREF(value);
        if (rc < 0)
            goto error;
    }
    return params;
error:
    Py_DECREF(params);
    return NULL;
}

static inline int is_alnum(Py_UCS1 c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
static inline int host_char(Py_UCS1 c) { return is_alnum(c) || c == '.' || c == '-'; }
/* the characters of a Via parameter name (a token) and value (a token, or an IPv6 address):
 * filled in at import (char_tables) */
static unsigned char via_key_ok[256], via_val_ok[256];

static PyObject *via_parm(PyObject *self, PyObject *text) {
    (void)self;
    if (ready_str(text, "via_parm(text: str)") < 0)
        return NULL;
    if (PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND)
        Py_RETURN_NONE;
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    if (n < 9 || memcmp(s, "SIP/2.0/", 8) != 0)
        Py_RETURN_NONE;
    const Py_UCS1 *sp_p = memchr(s + 8, ' ', (size_t)(n - 8));
    if (sp_p == NULL)
        Py_RETURN_NONE;
    Py_ssize_t sp = sp_p - s, tlen = sp - 8;
    PyObject *transport = NULL;
    for (size_t t = 0; t < N_TRANSPORTS; t++) {
        const char *name = TRANSPORTS[t];
        if ((Py_ssize_t)strlen(name) != tlen)
            continue;
        Py_ssize_t i = 0;
        while (i < tlen && Py_TOUPPER(s[8 + i]) == (Py_UCS1)name[i])
            i++;
        if (i == tlen) {
            transport = transport_str[t];
            break;
        }
    }
    if (transport == NULL)
        Py_RETURN_NONE;
    /* sent-by: host[:port] up to the first ';' */
    Py_ssize_t pos = sp + 1, hs = pos;
    while (pos < n && host_char(s[pos]))
        pos++;
    Py_ssize_t he = pos;
    if (he == hs)
        Py_RETURN_NONE;
    long port = -1;
    if (pos < n && s[pos] == ':') {
        pos++;
        Py_ssize_t ps = pos;
        port = 0;
        while (pos < n && s[pos] >= '0' && s[pos] <= '9' && pos - ps < 6) {
            port = port * 10 + (s[pos] - '0');
            pos++;
        }
        if (pos == ps || pos - ps > 5 || port > 65535)
            Py_RETURN_NONE; /* the full parser refuses an out-of-range port, by name */
    }
    if (!params_ok(s, pos, n, via_key_ok, via_val_ok))
        Py_RETURN_NONE;
    PyObject *params = params_dict(text, s, pos, n, via_key_ok, via_val_ok);
    if (params == NULL)
        return NULL;
    /* ttl: a number up to 255; branch: with a value */
    PyObject *ttl = PyDict_GetItemWithError(params, param_key[KEY_TTL]);
    if (ttl == NULL && PyErr_Occurred())
        goto error;
    if (ttl != NULL) {
        if (ttl == Py_None)
            goto decline;
        Py_ssize_t tl = PyUnicode_GET_LENGTH(ttl);
        const Py_UCS1 *td = PyUnicode_1BYTE_DATA(ttl);
        long v = 0;
        if (tl == 0 || tl > 3)
            goto decline;
        for (Py_ssize_t i = 0; i < tl; i++) {
            if (td[i] < '0' || td[i] > '9')
                goto decline;
            v = v * 10 + (td[i] - '0');
        }
        if (v > 255)
            goto decline;
    }
    PyObject *branch = PyDict_GetItemWithError(params, param_key[KEY_BRANCH]);
    if (branch == NULL && PyErr_Occurred())
        goto error;
    if (branch == Py_None)
        goto decline;
    PyObject *host = PyUnicode_Substring(text, hs, he);
    if (host == NULL)
        goto error;
    PyObject *port_obj;
    if (port < 0) {
        port_obj = Py_None;
        Py_INCREF(port_obj);
    } else {
        port_obj = PyLong_FromLong(port);
        if (port_obj == NULL) {
            Py_DECREF(host);
            goto error;
        }
    }
    Py_INCREF(transport);
    PyObject *out = PyTuple_New(4);
    if (out == NULL) {
        Py_DECREF(transport);
        Py_DECREF(host);
        Py_DECREF(port_obj);
        goto error;
    }
    PyTuple_SET_ITEM(out, 0, transport);
    PyTuple_SET_ITEM(out, 1, host);
    PyTuple_SET_ITEM(out, 2, port_obj);
    PyTuple_SET_ITEM(out, 3, params);
    return out;
decline:
    Py_DECREF(params);
    Py_RETURN_NONE;
error:
    Py_DECREF(params);
    return NULL;
}

/* memo_key(text): the key under which validation remembers its verdict on a From, To, Route
 * or Record-Route value (what siprouter.sip.validate._memo_key_py does). Two runs of
 * [A-Za-z0-9._-] are taken out, as each changes with every user or dialog while the rest of
 * the value stays:
 *   1. the user part after the first "sip:", when the run is followed by "@";
 *   2. the value of the first "tag=" (the From/To tag, the ftag of our Record-Route).
 * Either step gives None (remember nothing) when its marker is followed by no run where a run
 * would be taken out ("sip:@", "tag=" followed by anything else). So a key has "sip:@" at its
 * first "sip:" exactly when step 1 took a run out, and "tag=" exactly when step 2 did (step 2
 * works on step 1's result): two values with one key differ only in those runs. Any str kind. */
static PyObject *sip_colon, *tag_eq;

static inline int run_char(Py_UCS4 c) {
    return c < 128 && (is_alnum((Py_UCS1)c) || c == '.' || c == '_' || c == '-');
}

/* text with the run after the first `marker` taken out; text itself (a new reference) when
 * there is no marker, or (need_at) when the run is not followed by '@'; None as above. */
static PyObject *cut_run(PyObject *text, PyObject *marker, int need_at) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    Py_ssize_t at = PyUnicode_Find(text, marker, 0, n, 1);
    if (at == -2)
        return NULL;
    if (at == -1) {
        Py_INCREF(text);
        return text;
    }
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t i = at + PyUnicode_GET_LENGTH(marker), j = i;
    while (j < n && run_char(PyUnicode_READ(kind, data, j)))
        j++;
    if (need_at) {
        int at_follows = j < n && PyUnicode_READ(kind, data, j) == '@';
        if (!at_follows) {
            Py_INCREF(text);
            return text;
        }
    }
    if (j == i)
        Py_RETURN_NONE;
    PyObject *head = PyUnicode_Substring(text, 0, i);
    if (head == NULL)
        return NULL;
    PyObject *tail = PyUnicode_Substring(text, j, n);
    if (tail == NULL) {
        Py_DECREF(head);
        return NULL;
    }
    PyObject *joined = PyUnicode_Concat(head, tail);
    Py_DECREF(head);
    Py_DECREF(tail);
    return joined;
}

/* The runs to take out, both found on `text` itself: taking the user run out cannot make or
 * break a "tag=" (the run has no '=' and sits between "sip:" and '@'), so the first "tag=" of
 * step 1's result is the first "tag=" of the text. Returns 1 and the ranges (start == end: no
 * cut), 0 for "remember nothing", -1 on error. */
static int memo_cuts(PyObject *text, Py_ssize_t cut[4]) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    cut[0] = cut[1] = cut[2] = cut[3] = 0;
    Py_ssize_t at = PyUnicode_Find(text, sip_colon, 0, n, 1);
    if (at == -2)
        return -1;
    if (at >= 0) {
        Py_ssize_t i = at + 4, j = i;
        while (j < n && run_char(PyUnicode_READ(kind, data, j)))
            j++;
        if (j < n && PyUnicode_READ(kind, data, j) == '@') {
            if (j == i)
                return 0;
            cut[0] = i;
            cut[1] = j;
        }
    }
    at = PyUnicode_Find(text, tag_eq, 0, n, 1);
    if (at == -2)
        return -1;
    if (at >= 0) {
        Py_ssize_t i = at + 4, j = i;
        while (j < n && run_char(PyUnicode_READ(kind, data, j)))
            j++;
        if (j == i)
            return 0;
        cut[2] = i;
        cut[3] = j;
    }
    return 1;
}

static PyObject *memo_key(PyObject *self, PyObject *text) {
    (void)self;
    if (ready_str(text, "memo_key(text: str)") < 0)
        return NULL;
    Py_ssize_t cut[4];
    int rc = memo_cuts(text, cut);
    if (rc < 0)
        return NULL;
    if (rc == 0)
        Py_RETURN_NONE;
    Py_ssize_t u = cut[1] - cut[0], t = cut[3] - cut[2];
    if (u == 0 && t == 0) {
        Py_INCREF(text);
        return text;
    }
    if (PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND) { /* rare: the general two steps */
        PyObject *mid = cut_run(text, sip_colon, 1);
        if (mid == NULL || mid == Py_None)
            return mid;
        PyObject *key = cut_run(mid, tag_eq, 0);
        Py_DECREF(mid);
        return key;
    }
    /* one allocation: the text without [cut0, cut1) and [cut2, cut3), in either order */
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    Py_ssize_t a0 = cut[0], a1 = cut[1], b0 = cut[2], b1 = cut[3];
    if (u == 0) {
        a0 = a1 = b0;
    } else if (t == 0) {
        b0 = b1 = a1;
    } else if (b0 < a0) {
        Py_ssize_t x0 = a0, x1 = a1;
        a0 = b0;
        a1 = b1;
        b0 = x0;
        b1 = x1;
    }
    PyObject *key = PyUnicode_New(n - u - t, PyUnicode_IS_ASCII(text) ? 127 : 255);
    if (key == NULL)
        return NULL;
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(text);
    Py_UCS1 *k = PyUnicode_1BYTE_DATA(key);
    memcpy(k, s, (size_t)a0);
    memcpy(k + a0, s + a1, (size_t)(b0 - a1));
    memcpy(k + a0 + (b0 - a1), s + b1, (size_t)(n - b1));
    return key;
}

/* serialize(first, hdrs, body, display[, names, to_tag, tail]) -> bytes | None: the start line
 * `first`, CRLF, then for each entry of `hdrs` (the [canonical name, value, line, written name]
 * lists of index_headers, as edited since) its line as received, or when that is None (an
 * edited entry) "name: value" with the written name, or else display[canonical name]; each
 * line ended by CRLF, then CRLF and `body`. None when some part is not a str of one byte per
 * code point, an entry is not such a list, or an edited entry's name is not known that way:
 * the caller then writes it in Python (the same result, or the same error).
 *
 * With the three more arguments it writes a response from its request's entries, as
 * siprouter.sip.build._response_py does: only the entries whose canonical name is in the set
 * `names`; when `to_tag` is a str, each "to" entry as "To: " value ";tag=" to_tag; and
 * `tail` (the lines after the copied ones, up to and with the empty line) in place of the
 * final CRLF. */
static int one_byte_str(PyObject *o) {
    return PyUnicode_Check(o) && PyUnicode_READY(o) == 0
        && PyUnicode_KIND(o) == PyUnicode_1BYTE_KIND;
}

/* whether entry `h` is written (its canonical name in `names`, or no `names`): 1, 0, or -1
 * with an exception set */
static inline int wanted(PyObject *names, PyObject *h) {
    return names == NULL ? 1 : PySet_Contains(names, PyList_GET_ITEM(h, 0));
}

/* canonical name "to" */
static inline int is_to(PyObject *canon) {
    return PyUnicode_KIND(canon) == PyUnicode_1BYTE_KIND && PyUnicode_GET_LENGTH(canon) == 2
        && PyUnicode_1BYTE_DATA(canon)[0] == 't' && PyUnicode_1BYTE_DATA(canon)[1] == 'o';
}

static PyObject *serialize(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if ((nargs != 4 && nargs != 7) || !PyList_Check(args[1]) || !PyBytes_Check(args[2])
        || !PyDict_Check(args[3])
        || (nargs == 7 && ((args[4] != Py_None && !PyAnySet_Check(args[4]))
                           || (args[5] != Py_None && !PyUnicode_Check(args[5]))
                           || !PyUnicode_Check(args[6])))) {
        PyErr_SetString(PyExc_TypeError,
                        "serialize(first: str, hdrs: list, body: bytes, display: dict"
                        "[, names: set | None, to_tag: str | None, tail: str])");
        return NULL;
    }
    PyObject *first = args[0], *hdrs = args[1], *body = args[2], *display = args[3];
    PyObject *names = nargs == 7 && args[4] != Py_None ? args[4] : NULL;
    PyObject *to_tag = nargs == 7 && args[5] != Py_None ? args[5] : NULL;
    PyObject *tail = nargs == 7 ? args[6] : NULL;
    /* the entries written, found in the first pass (borrowed: hdrs is not changed meanwhile) */
    PyObject *pick_stack[64], **pick = pick_stack;
    if (!one_byte_str(first) || (to_tag != NULL && !one_byte_str(to_tag))
        || (tail != NULL && !one_byte_str(tail)))
        goto python;
    Py_ssize_t count = PyList_GET_SIZE(hdrs), picked = 0;
    Py_ssize_t total = PyUnicode_GET_LENGTH(first) + 2 + PyBytes_GET_SIZE(body)
                       + (tail != NULL ? PyUnicode_GET_LENGTH(tail) : 2);
    if (count > 64 && (pick = PyMem_Malloc((size_t)count * sizeof(PyObject *))) == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *h = PyList_GET_ITEM(hdrs, i);
        if (!PyList_Check(h) || PyList_GET_SIZE(h) < 4 || !PyUnicode_Check(PyList_GET_ITEM(h, 0)))
            goto python;
        int want = wanted(names, h);
        if (want < 0)
            goto python;
        if (!want)
            continue;
        pick[picked++] = h;
        PyObject *value = PyList_GET_ITEM(h, 1);
        if (to_tag != NULL && PyUnicode_READY(PyList_GET_ITEM(h, 0)) == 0
            && is_to(PyList_GET_ITEM(h, 0))) {
            if (!one_byte_str(value))
                goto python;
            total += 4 + PyUnicode_GET_LENGTH(value) + 5 + PyUnicode_GET_LENGTH(to_tag) + 2;
            continue;
        }
        PyObject *line = PyList_GET_ITEM(h, 2);
        if (line != Py_None) {
            if (!one_byte_str(line))
                goto python;
            total += PyUnicode_GET_LENGTH(line) + 2;
            continue;
        }
        PyObject *name = PyList_GET_ITEM(h, 3);
        if (name == Py_None || (PyUnicode_Check(name) && PyUnicode_GET_LENGTH(name) == 0)) {
            name = PyDict_GetItemWithError(display, PyList_GET_ITEM(h, 0));
            if (name == NULL)
                goto python;
        }
        if (!one_byte_str(name) || !one_byte_str(value))
            goto python;
        total += PyUnicode_GET_LENGTH(name) + 2 + PyUnicode_GET_LENGTH(value) + 2;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL)
        goto python;
    char *w = PyBytes_AS_STRING(out);
#define PUT_STR(o)                                                     \
    do {                                                               \
        Py_ssize_t len_ = PyUnicode_GET_LENGTH(o);                     \
        memcpy(w, PyUnicode_1BYTE_DATA(o), (size_t)len_);              \
        w += len_;                                                     \
    } while (0)
    PUT_STR(first);
    *w++ = '\r';
    *w++ = '\n';
    for (Py_ssize_t i = 0; i < picked; i++) {
        PyObject *h = pick[i];
        if (to_tag != NULL && is_to(PyList_GET_ITEM(h, 0))) {
            memcpy(w, "To: ", 4);
            w += 4;
            PUT_STR(PyList_GET_ITEM(h, 1));
            memcpy(w, ";tag=", 5);
            w += 5;
            PUT_STR(to_tag);
        } else {
            PyObject *line = PyList_GET_ITEM(h, 2);
            if (line != Py_None) {
                PUT_STR(line);
            } else {
                PyObject *name = PyList_GET_ITEM(h, 3);
                if (name == Py_None || PyUnicode_GET_LENGTH(name) == 0)
                    name = PyDict_GetItem(display, PyList_GET_ITEM(h, 0)); /* found above */
                PUT_STR(name);
                *w++ = ':';
                *w++ = ' ';
                PUT_STR(PyList_GET_ITEM(h, 1));
            }
        }
        *w++ = '\r';
        *w++ = '\n';
    }
    if (tail != NULL) {
        PUT_STR(tail);
    } else {
        *w++ = '\r';
        *w++ = '\n';
    }
#undef PUT_STR
    memcpy(w, PyBytes_AS_STRING(body), (size_t)PyBytes_GET_SIZE(body));
    if (pick != pick_stack)
        PyMem_Free(pick);
    return out;
python:
    if (pick != pick_stack)
        PyMem_Free(pick);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

/* via_branch(value) -> str | None: the branch of the first via-parm of a Via value, read
 * from the text as SipMessage.top_branch reads it in Python: the value has no '"' or '<', its
 * first item (up to the first comma, stripped as str.strip() strips) is not empty and holds
 * ";branch=" (any case) exactly once, followed by a non-empty run up to the first of "; \t,".
 * None otherwise: the caller then asks the full Via parser. */
static inline int py_space(Py_UCS1 c) { /* str.isspace() for one latin-1 code point */
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f) || c == 0x85
        || c == 0xa0;
}

/* siprouter.sip.headers.cut_first_item over s[0:n]: 0 when the text holds '"' or '<' (a comma
 * there may not separate); else 1, with the first item (up to the first comma) at
 * s[span[0]:span[1]] and the text after that comma at s[span[2]:span[3]] (empty when there is
 * none), each stripped as str.strip() strips. The caller decides about an empty first item. */
static int cut_first(const Py_UCS1 *s, Py_ssize_t n, Py_ssize_t span[4]) {
    if (memchr(s, '"', (size_t)n) != NULL || memchr(s, '<', (size_t)n) != NULL)
        return 0;
    const Py_UCS1 *comma = memchr(s, ',', (size_t)n);
    span[0] = 0;
    span[1] = comma == NULL ? n : comma - s;
    span[2] = comma == NULL ? n : span[1] + 1;
    span[3] = n;
    for (int k = 0; k < 4; k += 2) {
        while (span[k] < span[k + 1] && py_space(s[span[k]]))
            span[k]++;
        while (span[k + 1] > span[k] && py_space(s[span[k + 1] - 1]))
            span[k + 1]--;
    }
    return 1;
}

static PyObject *via_branch(PyObject *self, PyObject *text) {
    (void)self;
    if (ready_str(text, "via_branch(value: str)") < 0)
        return NULL;
    if (PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND)
        Py_RETURN_NONE;
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    Py_ssize_t span[4];
    if (!cut_first(s, n, span))
        Py_RETURN_NONE;
    Py_ssize_t a = span[0], end = span[1];
    if (end == a)
        Py_RETURN_NONE;
    static const char want[] = ";branch=";
    Py_ssize_t found = -1;
    for (Py_ssize_t i = a; i + 8 <= end; i++) {
        const Py_UCS1 *semi = memchr(s + i, ';', (size_t)(end - 8 - i + 1));
        if (semi == NULL)
            break;
        i = semi - s;
        Py_ssize_t j = 1;
        while (j < 8 && Py_TOLOWER(s[i + j]) == (Py_UCS1)want[j])
            j++;
        if (j < 8)
            continue;
        if (found >= 0)
            Py_RETURN_NONE; /* twice: the full parser decides */
        found = i;
        i += 7;
    }
    if (found < 0)
        Py_RETURN_NONE;
    Py_ssize_t k = found + 8, e = k;
    while (e < end && s[e] != ';' && s[e] != ',' && s[e] != ' ' && s[e] != '\t')
        e++;
    if (e == k)
        Py_RETURN_NONE;
    return PyUnicode_Substring(text, k, e);
}

/* cseq(value, methods) -> (number, method) | None: a CSeq value as SipMessage reads it: two
 * words (str.split()), the first 1 to 10 ASCII digits below 2**31. A method that is a key of
 * the dict `methods` (message._METHOD_NAMES) comes back as its value, one shared str. None
 * otherwise (the caller names the error). */
static PyObject *cseq(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    static const char sig[] = "cseq(value: str, methods: dict)";
    if (nargs != 2 || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, sig);
        return NULL;
    }
    PyObject *text = args[0], *methods = args[1];
    if (ready_str(text, sig) < 0)
        return NULL;
    if (PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND)
        Py_RETURN_NONE;
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), i = 0;
    while (i < n && py_space(s[i]))
        i++;
    Py_ssize_t ds = i;
    long long num = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        num = num * 10 + (s[i] - '0');
        i++;
        if (i - ds > 10)
            Py_RETURN_NONE;
    }
    if (i == ds || i == n || !py_space(s[i]) || num >= 2147483648LL)
        Py_RETURN_NONE;
    while (i < n && py_space(s[i]))
        i++;
    Py_ssize_t ms = i;
    while (i < n && !py_space(s[i]))
        i++;
    Py_ssize_t me = i;
    while (i < n && py_space(s[i]))
        i++;
    if (me == ms || i != n)
        Py_RETURN_NONE;
    PyObject *method = NULL, *key, *shared;
    Py_ssize_t at = 0;
    while (PyDict_Next(methods, &at, &key, &shared)) { /* a dozen names, compared as bytes */
        if (PyUnicode_Check(key) && PyUnicode_GET_LENGTH(key) == me - ms && one_byte_str(key)
            && memcmp(PyUnicode_1BYTE_DATA(key), s + ms, (size_t)(me - ms)) == 0) {
            method = shared;
            Py_INCREF(method);
            break;
        }
    }
    if (method == NULL && PyErr_Occurred())
        return NULL;
    if (method == NULL) {
        method = PyUnicode_Substring(text, ms, me);
        if (method == NULL)
            return NULL;
    }
    PyObject *number = PyLong_FromLongLong(num);
    if (number == NULL) {
        Py_DECREF(method);
        return NULL;
    }
    PyObject *out = PyTuple_New(2);
    if (out == NULL) {
        Py_DECREF(number);
        Py_DECREF(method);
        return NULL;
    }
    PyTuple_SET_ITEM(out, 0, number);
    PyTuple_SET_ITEM(out, 1, method);
    return out;
}

/* values_hash(first, second, hdrs, names) -> str | None: a 60-bit hash, in decimal, of
 * `first`, `second` and the value of every entry of `hdrs` (index_headers lists) whose
 * canonical name is in the set `names`, in order, each with its length. None when some of
 * that text is not one byte per code point (the caller then hashes it in Python). */
static inline uint64_t word_mix(uint64_t h, const Py_UCS1 *p, Py_ssize_t n) {
    /* eight bytes at a time (a multiply and a shift per word), then the tail and the length:
     * the text ends where its length says, so "ab" + "c" and "a" + "bc" differ */
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x9E3779B97F4A7C15ULL;
        h ^= h >> 29;
    }
    uint64_t w = 0;
    memcpy(&w, p + i, (size_t)(n - i));
    h = (h ^ w) * 0x9E3779B97F4A7C15ULL;
    h ^= h >> 29;
    h = (h ^ (uint64_t)n) * 0xBF58476D1CE4E5B9ULL;
    return h ^ (h >> 31);
}

static PyObject *values_hash(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4 || !PyList_Check(args[2]) || !PyAnySet_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "values_hash(first: str, second: str, hdrs: list, names: frozenset)");
        return NULL;
    }
    PyObject *hdrs = args[2], *names = args[3];
    uint64_t h = 1469598103934665603ULL;
    for (int k = 0; k < 2; k++) {
        if (!one_byte_str(args[k]))
            goto python;
        h = word_mix(h, PyUnicode_1BYTE_DATA(args[k]), PyUnicode_GET_LENGTH(args[k]));
    }
    Py_ssize_t count = PyList_GET_SIZE(hdrs);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *e = PyList_GET_ITEM(hdrs, i);
        if (!PyList_Check(e) || PyList_GET_SIZE(e) < 2)
            Py_RETURN_NONE;
        int in = PySet_Contains(names, PyList_GET_ITEM(e, 0));
        if (in < 0)
            return NULL;
        if (!in)
            continue;
        PyObject *v = PyList_GET_ITEM(e, 1);
        if (!one_byte_str(v))
            goto python;
        h = word_mix(h, PyUnicode_1BYTE_DATA(v), PyUnicode_GET_LENGTH(v));
    }
    h &= 0x0FFFFFFFFFFFFFFFULL;
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + (int)(h % 10));
        h /= 10;
    } while (h != 0);
    PyObject *out = PyUnicode_New(n, 127);
    if (out == NULL)
        return NULL;
    Py_UCS1 *w = PyUnicode_1BYTE_DATA(out);
    for (int i = 0; i < n; i++)
        w[i] = (Py_UCS1)digits[n - 1 - i];
    return out;
python:
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

/* uri_parts(text): the common form of a sip: or sips: URI, read as siprouter.sip.uri._parse_uri
 * reads it: returns (scheme in lower case, user or None, host, port or None, params) or None
 * for anything else, which _parse_uri then reads (and refuses, with the error). The common
 * form: the scheme "sip" or "sips" in any case; a user of the user characters without a
 * password or %-escape; a host name or IPv4 host (letters, digits, '-', '_', '.', neither '-'
 * nor '.' first, no '-' last) with an optional port of at most 5 digits up to 65535; then
 * ';'-separated parameters, each a name of the parameter characters and an optional '='
 * value of them (both not empty; names in lower case, the last of a name kept); no '?'
 * headers. One byte per code point only. */
static unsigned char uri_user_ok[256], uri_host_ok[256], uri_param_ok[256];
/* name_addr_parts: the characters a URI in <> may not have, and those of a parameter value */
static unsigned char na_uri_bad[256], na_value_ok[256];
/* call_id_ok: the characters of a word of a Call-ID */
static unsigned char callid_ok[256];
static PyObject *scheme_sip, *scheme_sips;

static void char_tables(void) {
    for (int c = 0; c < 256; c++)
        via_key_ok[c] = via_val_ok[c] = (unsigned char)is_alnum((Py_UCS1)c);
    for (const char *c = "-.!%*_+`'~"; *c; c++)
        via_key_ok[(unsigned char)*c] = via_val_ok[(unsigned char)*c] = 1;
    for (const char *c = ":[]"; *c; c++)
        via_val_ok[(unsigned char)*c] = 1;
    static const char alnum[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static const char unreserved[] = "-_.!~*'()";
    for (const char *c = alnum; *c; c++)
        uri_user_ok[(unsigned char)*c] = uri_host_ok[(unsigned char)*c] =
            uri_param_ok[(unsigned char)*c] = 1;
    for (const char *c = unreserved; *c; c++)
        uri_user_ok[(unsigned char)*c] = uri_param_ok[(unsigned char)*c] = 1;
    for (const char *c = "&=+$,;?/"; *c; c++)
        uri_user_ok[(unsigned char)*c] = 1;
    for (const char *c = "[]/:&+$"; *c; c++)
        uri_param_ok[(unsigned char)*c] = 1;
    for (const char *c = "-_."; *c; c++)
        uri_host_ok[(unsigned char)*c] = 1;
    for (const char *c = " \t\r\n<>\""; *c; c++)
        na_uri_bad[(unsigned char)*c] = 1;
    for (int c = 0x21; c < 0x7f; c++)
        na_value_ok[c] = strchr(";,\"<>", c) == NULL;
    for (const char *c = alnum; *c; c++)
        callid_ok[(unsigned char)*c] = 1;
    for (const char *c = "-.!%*_+`'~()<>:\\\"/[]?{}"; *c; c++)
        callid_ok[(unsigned char)*c] = 1;
}

/* the offsets of a URI of the common form in s[0:n] (ASCII), found by uri_scan */
typedef struct {
    PyObject *scheme;          /* borrowed: scheme_sip or scheme_sips */
    Py_ssize_t us, ue;         /* the user part s[us:ue]; ue -1: none */
    Py_ssize_t hs, he;         /* the host */
    long port;                 /* -1: none */
    Py_ssize_t params;         /* where the ';' parameters start (n: none) */
} uri_span;

/* 1 when s[0:n] is a URI of the common form uri_parts reads (then `u` holds its offsets),
 * else 0 */
static int uri_scan(const Py_UCS1 *s, Py_ssize_t n, uri_span *u) {
    Py_ssize_t pos;
    if (n >= 4 && Py_TOLOWER(s[0]) == 's' && Py_TOLOWER(s[1]) == 'i' && Py_TOLOWER(s[2]) == 'p'
        && s[3] == ':') {
        u->scheme = scheme_sip;
        pos = 4;
    } else if (n >= 5 && Py_TOLOWER(s[0]) == 's' && Py_TOLOWER(s[1]) == 'i'
               && Py_TOLOWER(s[2]) == 'p' && Py_TOLOWER(s[3]) == 's' && s[4] == ':') {
        u->scheme = scheme_sips;
        pos = 5;
    } else {
        return 0;
    }
    /* userinfo: up to the first '@', when there is one */
    u->us = pos;
    u->ue = -1;
    const Py_UCS1 *at = memchr(s + pos, '@', (size_t)(n - pos));
    if (at != NULL) {
        u->ue = at - s;
        if (u->ue == u->us)
            return 0; /* an empty user part */
        for (Py_ssize_t i = u->us; i < u->ue; i++)
            if (!uri_user_ok[s[i]])
                return 0; /* ':' (a password), '%' (an escape), or a bad character */
        pos = u->ue + 1;
    }
    /* host [":" port] */
    Py_ssize_t hs = pos;
    while (pos < n && uri_host_ok[s[pos]])
        pos++;
    Py_ssize_t he = pos;
    if (he == hs || s[hs] == '-' || s[hs] == '.' || s[he - 1] == '-')
        return 0;
    u->hs = hs;
    u->he = he;
    u->port = -1;
    if (pos < n && s[pos] == ':') {
        Py_ssize_t ps = ++pos;
        long port = 0;
        while (pos < n && s[pos] >= '0' && s[pos] <= '9' && pos - ps < 6) {
            port = port * 10 + (s[pos] - '0');
            pos++;
        }
        if (pos == ps || pos - ps > 5 || port > 65535 || (pos < n && s[pos] >= '0'
                                                          && s[pos] <= '9'))
            return 0;
        u->port = port;
    }
    /* no '?' headers, nothing else after the host and port: parameters or the end */
    u->params = pos;
    return params_ok(s, pos, n, uri_param_ok, uri_param_ok);
}

static PyObject *uri_parts(PyObject *self, PyObject *text) {
    (void)self;
    if (ready_str(text, "uri_parts(text: str)") < 0)
        return NULL;
    if (!PyUnicode_IS_ASCII(text))
        Py_RETURN_NONE;
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    uri_span u;
    if (!uri_scan(s, n, &u))
        Py_RETURN_NONE;
    PyObject *scheme = u.scheme;
    Py_ssize_t us = u.us, ue = u.ue, hs = u.hs, he = u.he, pos = u.params;
    long port = u.port;
    PyObject *params = params_dict(text, s, pos, n, uri_param_ok, uri_param_ok);
    PyObject *user = NULL, *host = NULL, *port_obj = NULL;
    if (params == NULL)
        return NULL;
    if (ue >= 0) {
        user = PyUnicode_Substring(text, us, ue);
        if (user == NULL)
            goto error;
    } else {
        user = Py_None;
        Py_INCREF(user);
    }
    host = PyUnicode_Substring(text, hs, he);
    if (host == NULL)
        goto error;
    if (port < 0) {
        port_obj = Py_None;
        Py_INCREF(port_obj);
    } else if ((port_obj = PyLong_FromLong(port)) == NULL) {
        goto error;
    }
    PyObject *out = PyTuple_New(5);
    if (out == NULL)
        goto error;
    Py_INCREF(scheme);
    PyTuple_SET_ITEM(out, 0, scheme);
    PyTuple_SET_ITEM(out, 1, user);
    PyTuple_SET_ITEM(out, 2, host);
    PyTuple_SET_ITEM(out, 3, port_obj);
    PyTuple_SET_ITEM(out, 4, params);
    return out;
error:
    Py_DECREF(params);
    Py_XDECREF(user);
    Py_XDECREF(host);
    Py_XDECREF(port_obj);
    return NULL;
}

/* name_addr_parts(text): the common form of a name-addr, read as
 * siprouter.sip.headers._parse_name_addr_py reads it: returns (uri, params) or None for
 * anything else, which the Python parser then reads (and refuses, with the error). The common
 * form: '<', a URI with a ':' (not first) and none of SP HTAB CR LF '<' '"', '>', then
 * parameters ";name[=value]" with no whitespace, each name a token (in lower case in params,
 * the last of a name kept) and each value one or more characters other than SP HTAB CR LF
 * ';' ',' '"' '<' '>' (no quoted value), up to the end. No display name, no addr-spec
 * without '<>'. ASCII only. */
/* 1 when s[0:n] is a name-addr of the common form name_addr_parts reads, the '>' at *ue;
 * else 0 */
static int na_scan(const Py_UCS1 *s, Py_ssize_t n, Py_ssize_t *ue) {
    if (n < 3 || s[0] != '<')
        return 0;
    const Py_UCS1 *gt = memchr(s + 1, '>', (size_t)(n - 1));
    if (gt == NULL)
        return 0;
    Py_ssize_t end = gt - s, colon = -1;
    for (Py_ssize_t i = 1; i < end; i++) {
        if (na_uri_bad[s[i]])
            return 0;
        if (s[i] == ':' && colon < 0)
            colon = i;
    }
    if (colon <= 1)
        return 0; /* no ':', or ':' first (an empty URI has none) */
    *ue = end;
    return params_ok(s, end + 1, n, via_key_ok, na_value_ok);
}

static PyObject *name_addr_parts(PyObject *self, PyObject *text) {
    (void)self;
    if (ready_str(text, "name_addr_parts(text: str)") < 0)
        return NULL;
    if (!PyUnicode_IS_ASCII(text))
        Py_RETURN_NONE;
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), ue;
    if (!na_scan(s, n, &ue))
        Py_RETURN_NONE;
    PyObject *params = params_dict(text, s, ue + 1, n, via_key_ok, na_value_ok);
    if (params == NULL)
        return NULL;
    PyObject *uri = PyUnicode_Substring(text, 1, ue);
    if (uri == NULL)
        goto error;
    PyObject *out = PyTuple_New(2);
    if (out == NULL) {
        Py_DECREF(uri);
        goto error;
    }
    PyTuple_SET_ITEM(out, 0, uri);
    PyTuple_SET_ITEM(out, 1, params);
    return out;
error:
    Py_DECREF(params);
    return NULL;
}

/* rport_fill(value, port, host): the top Via line's value with the received address filled
 * in where its first via-parm ends with its first ";rport" (RFC 3581, as nearly every UA asks
 * for it): first item + "=" port ";received=" host, then ", " and the rest when there is
 * more, as siprouter.runtime.core._mark_received writes it from cut_first_item. None for
 * anything else (a '"' or '<' in the value, an empty first item, no ";rport" at its end, text
 * of more than one byte per code point): the caller then writes the Via again in full. */
static PyObject *rport_fill(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    static const char sig[] = "rport_fill(value: str, port: str, host: str)";
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, sig);
        return NULL;
    }
    for (int k = 0; k < 3; k++)
        if (ready_str(args[k], sig) < 0)
            return NULL;
    if (!one_byte_str(args[0]) || !one_byte_str(args[1]) || !one_byte_str(args[2]))
        Py_RETURN_NONE;
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(args[0]);
    Py_ssize_t n = PyUnicode_GET_LENGTH(args[0]);
    Py_ssize_t span[4];
    if (!cut_first(s, n, span))
        Py_RETURN_NONE;
    Py_ssize_t fs = span[0], fe = span[1], rs = span[2], re = span[3];
    if (fe - fs < 6 || memcmp(s + fe - 6, ";rport", 6) != 0)
        Py_RETURN_NONE;
    for (Py_ssize_t i = fs; i + 6 < fe; i++)
        if (s[i] == ';' && memcmp(s + i, ";rport", 6) == 0)
            Py_RETURN_NONE; /* an earlier ";rport": not the one at the end */
    PyObject *port = args[1], *host = args[2];
    Py_ssize_t pl = PyUnicode_GET_LENGTH(port), hl = PyUnicode_GET_LENGTH(host);
    Py_ssize_t total = (fe - fs) + 1 + pl + 10 + hl + (re > rs ? 2 + (re - rs) : 0);
    Py_UCS4 maxc = 0x7f;
    if (!PyUnicode_IS_ASCII(args[0]) || !PyUnicode_IS_ASCII(port) || !PyUnicode_IS_ASCII(host))
        maxc = 0xff;
    PyObject *out = PyUnicode_New(total, maxc);
    if (out == NULL)
        return NULL;
    Py_UCS1 *w = PyUnicode_1BYTE_DATA(out);
    memcpy(w, s + fs, (size_t)(fe - fs));
    w += fe - fs;
    *w++ = '=';
    memcpy(w, PyUnicode_1BYTE_DATA(port), (size_t)pl);
    w += pl;
    memcpy(w, ";received=", 10);
    w += 10;
    memcpy(w, PyUnicode_1BYTE_DATA(host), (size_t)hl);
    w += hl;
    if (re > rs) {
        *w++ = ',';
        *w++ = ' ';
        memcpy(w, s + rs, (size_t)(re - rs));
    }
    return out;
}

/* uri_ok(text): True when text is a URI of the form uri_parts reads (which parse_uri then
 * accepts), else None: the caller then asks parse_uri. Nothing is made on the way. */
static PyObject *uri_ok(PyObject *self, PyObject *text) {
    (void)self;
    if (ready_str(text, "uri_ok(text: str)") < 0)
        return NULL;
    uri_span u;
    if (PyUnicode_IS_ASCII(text)
        && uri_scan(PyUnicode_1BYTE_DATA(text), PyUnicode_GET_LENGTH(text), &u))
        Py_RETURN_TRUE;
    Py_RETURN_NONE;
}

/* name_addr_ok(text): True when text is a name-addr of the form name_addr_parts reads whose
 * URI is of the form uri_parts reads (so that siprouter.sip.validate's full check, and the
 * parsers behind it, accept it too), else None: the caller then asks the full check. A
 * display name may come first: a quoted string of printable ASCII or HTAB without '"' or '\',
 * or tokens with SP or HTAB between them, then SP or HTAB or nothing before the '<'. Nothing
 * is made on the way. */
static PyObject *name_addr_ok(PyObject *self, PyObject *text) {
    (void)self;
    if (ready_str(text, "name_addr_ok(text: str)") < 0)
        return NULL;
    if (!PyUnicode_IS_ASCII(text))
        Py_RETURN_NONE;
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), ue, pos = 0;
    uri_span u;
    if (n > 0 && s[0] == '"') {
        for (pos = 1; pos < n && s[pos] != '"'; pos++)
            if (s[pos] == '\\' || (s[pos] < 0x20 && s[pos] != '\t') || s[pos] == 0x7f)
                Py_RETURN_NONE;
        if (pos == n)
            Py_RETURN_NONE;
        pos++;
        while (pos < n && (s[pos] == ' ' || s[pos] == '\t'))
            pos++;
    } else if (n > 0 && via_key_ok[s[0]]) {
        while (pos < n && (via_key_ok[s[pos]] || s[pos] == ' ' || s[pos] == '\t'))
            pos++;
    }
    if (na_scan(s + pos, n - pos, &ue) && uri_scan(s + pos + 1, ue - 1, &u))
        Py_RETURN_TRUE;
    Py_RETURN_NONE;
}

/* call_id_ok(value) -> bool: siprouter.sip.validate's Call-ID rule (RFC 3261 §25.1: callid =
 * word [ "@" word ]), the word characters in callid_ok (ASCII only) */

static PyObject *call_id_ok(PyObject *self, PyObject *value) {
    (void)self;
    if (ready_str(value, "call_id_ok(value: str)") < 0)
        return NULL;
    if (PyUnicode_KIND(value) != PyUnicode_1BYTE_KIND)
        Py_RETURN_FALSE;
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value), word = 0, ats = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (callid_ok[s[i]]) {
            word++;
        } else if (s[i] == '@' && ats == 0 && word > 0) {
            ats = 1;
            word = 0;
        } else {
            Py_RETURN_FALSE;
        }
    }
    if (word == 0)
        Py_RETURN_FALSE;
    Py_RETURN_TRUE;
}

/* tag_of(value): the tag parameter of a From/To value as siprouter.sip.message._tag_of_py reads
 * it, for the common forms: after the last '>' (or in the whole value without one), the first
 * ";tag=" with no 't' or 'T' before it, then a value up to the first of "; \t," (not empty):
 * that value; no "tag" in any case after the last '>' at all: None. Anything else gives ""
 * (no tag is empty): the caller then asks the Python reader. */
static PyObject *tag_of(PyObject *self, PyObject *value) {
    (void)self;
    if (ready_str(value, "tag_of(value: str)") < 0)
        return NULL;
    if (PyUnicode_KIND(value) != PyUnicode_1BYTE_KIND)
        goto decline;
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value), t0 = 0;
    for (Py_ssize_t i = n; i > 0; i--) {
        if (s[i - 1] == '>') {
            t0 = i;
            break;
        }
    }
    for (Py_ssize_t i = t0; i < n; i++) {
        if (s[i] == 't' || s[i] == 'T') {
            /* the first t: the start of ";tag=" here, or the general reader decides */
            if (i >= t0 + 1 && s[i - 1] == ';' && i + 4 <= n && s[i + 1] == 'a'
                && s[i + 2] == 'g' && s[i + 3] == '=') {
                Py_ssize_t k = i + 4, e = k;
                while (e < n && s[e] != ';' && s[e] != ',' && s[e] != ' ' && s[e] != '\t')
                    e++;
                if (e > k)
                    return PyUnicode_Substring(value, k, e);
            }
            goto decline;
        }
    }
    Py_RETURN_NONE; /* no 't' at all after the last '>': no "tag" in any case */
decline:
    Py_INCREF(empty_str);
    return empty_str;
}

/* is_ascii(text) -> bool: str.isascii() as a plain call (a str method is a generic method call
 * from compiled code, several times the cost) */
static PyObject *is_ascii(PyObject *self, PyObject *text) {
    (void)self;
    if (ready_str(text, "is_ascii(text: str)") < 0)
        return NULL;
    return PyBool_FromLong(PyUnicode_IS_ASCII(text));
}

static PyMethodDef scan_methods[] = {
    {"index_headers", (PyCFunction)(void (*)(void))index_headers, METH_FASTCALL,
     "index_headers(block, entries) -> list | None: the header-line index (see the module)."},
    {"via_parm", (PyCFunction)via_parm, METH_O,
     "via_parm(text) -> (transport, host, port, params) | None: the common form of a via-parm."},
    {"memo_key", (PyCFunction)memo_key, METH_O,
     "memo_key(text) -> str | None: the memo key of a From/To/Route value (see the module)."},
    {"via_branch", (PyCFunction)via_branch, METH_O,
     "via_branch(value) -> str | None: the top Via's branch read from the text (see above)."},
    {"cseq", (PyCFunction)(void (*)(void))cseq, METH_FASTCALL,
     "cseq(value, methods) -> (number, method) | None: a CSeq value read (see above)."},
    {"values_hash", (PyCFunction)(void (*)(void))values_hash, METH_FASTCALL,
     "values_hash(first, second, hdrs, names) -> str | None: a hash of header values."},
    {"is_ascii", (PyCFunction)is_ascii, METH_O, "is_ascii(text) -> bool: str.isascii()."},
    {"name_addr_parts", (PyCFunction)name_addr_parts, METH_O,
     "name_addr_parts(text) -> (uri, params) | None: a common name-addr read."},
    {"call_id_ok", (PyCFunction)call_id_ok, METH_O,
     "call_id_ok(value) -> bool: word [\"@\" word] (RFC 3261 section 25.1)."},
    {"head", (PyCFunction)(void (*)(void))head, METH_FASTCALL,
     "head(text, start, entries) -> (first, method, target, status, hdrs, hdr_at, body_at, "
     "content_length, ascii) | None: a message's start line and header section read."},
    {"rport_fill", (PyCFunction)(void (*)(void))rport_fill, METH_FASTCALL,
     "rport_fill(value, port, host) -> str | None: the top Via with ;rport=port;received=host."},
    {"uri_ok", (PyCFunction)uri_ok, METH_O,
     "uri_ok(text) -> True | None: a common sip: URI (as uri_parts reads it)."},
    {"name_addr_ok", (PyCFunction)name_addr_ok, METH_O,
     "name_addr_ok(text) -> True | None: a common name-addr with a common sip: URI."},
    {"tag_of", (PyCFunction)tag_of, METH_O,
     "tag_of(value) -> str | None: the tag of a From/To value, \"\" to ask the Python reader."},
    {"uri_parts", (PyCFunction)uri_parts, METH_O,
     "uri_parts(text) -> (scheme, user, host, port, params) | None: a common sip: URI read."},
    {"serialize", (PyCFunction)(void (*)(void))serialize, METH_FASTCALL,
     "serialize(first, hdrs, body, display[, names, to_tag, tail]) -> bytes | None: a message"
     " (or a response to it) written out."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef scan_module = {
    PyModuleDef_HEAD_INIT, "siprouter.sip._scan",
    "The header-line index of a SIP message, in C (see siprouter.sip.message).", -1,
    scan_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__scan(void) {
    if (scheme_sip == NULL) {
        char_tables();
        empty_str = PyUnicode_New(0, 127);
        if (empty_str == NULL)
            return NULL;
        scheme_sip = PyUnicode_InternFromString("sip");
        scheme_sips = PyUnicode_InternFromString("sips");
        if (scheme_sip == NULL || scheme_sips == NULL)
            return NULL;
    }
    if (tag_eq == NULL) {
        tag_eq = PyUnicode_InternFromString("tag=");
        sip_colon = PyUnicode_InternFromString("sip:");
        if (tag_eq == NULL || sip_colon == NULL)
            return NULL;
    }
    for (size_t k = 0; k < N_PARAM_KEYS; k++) {
        if (param_key[k] == NULL) {
            param_key[k] = PyUnicode_InternFromString(PARAM_KEYS[k]);
            if (param_key[k] == NULL)
                return NULL;
        }
    }
    for (size_t m = 0; m < N_METHODS; m++) {
        if (method_str[m] == NULL) {
            method_str[m] = PyUnicode_InternFromString(METHODS[m]);
            if (method_str[m] == NULL)
                return NULL;
        }
    }
    for (size_t t = 0; t < N_TRANSPORTS; t++) {
        if (transport_str[t] == NULL) {
            transport_str[t] = PyUnicode_InternFromString(TRANSPORTS[t]);
            if (transport_str[t] == NULL)
                return NULL;
        }
    }
    return PyModule_Create(&scan_module);
}
