/* siprouter.sip._scan: the header-line index of a SIP message, in C.
 *
 * index_headers(block, entries) does what siprouter.sip.message._fast_headers does, with the
 * same result, in one pass over the bytes and without a Python call per line:
 *
 *   block    the header section after the start line, decoded as latin-1 (one code point per
 *            byte), each line ended by CRLF;
 *   entries  the parser's dict: header name as written -> (canonical name, written name).
 *
 * It returns a list with one [canonical name, value, line, written name] list per line, where
 * `line` is the line without its CRLF and `value` the text after the first colon with ASCII
 * whitespace trimmed; or None when any line does not fit the common case (a bare LF, a line
 * without a colon or starting with one, a name not in `entries`, which includes every folded
 * line) - the caller then takes the line-by-line parser, which also gives the errors. A str
 * that is not one byte per code point also gives None.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* the whitespace str.strip(_WIRE_WS) trims in message.py: " \t\r\n\v\f" and 0x1c-0x1f */
static inline int wire_ws(Py_UCS1 c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == 0x0b || c == 0x0c
        || (c >= 0x1c && c <= 0x1f);
}

static PyObject *index_headers(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "index_headers(block, entries) takes 2 arguments");
        return NULL;
    }
    PyObject *block = args[0], *entries = args[1];
    if (!PyUnicode_Check(block) || !PyDict_Check(entries)) {
        PyErr_SetString(PyExc_TypeError, "index_headers(block: str, entries: dict)");
        return NULL;
    }
    if (PyUnicode_READY(block) < 0)
        return NULL;
    if (PyUnicode_KIND(block) != PyUnicode_1BYTE_KIND)
        Py_RETURN_NONE;
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(block);
    Py_ssize_t n = PyUnicode_GET_LENGTH(block);
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    Py_ssize_t pos = 0;
    while (pos < n) {
        const Py_UCS1 *nl = memchr(s + pos, '\n', (size_t)(n - pos));
        if (nl == NULL)
            goto decline; /* the last line has no line end */
        Py_ssize_t lf = nl - s;
        if (lf == pos || s[lf - 1] != '\r')
            goto decline; /* a bare LF (an empty line cannot be inside the block either) */
        Py_ssize_t end = lf - 1; /* the line is s[pos:end] */
        const Py_UCS1 *colon_p = memchr(s + pos, ':', (size_t)(end - pos));
        if (colon_p == NULL || colon_p == s + pos)
            goto decline;
        Py_ssize_t colon = colon_p - s;
        PyObject *name = PyUnicode_Substring(block, pos, colon);
        if (name == NULL)
            goto error;
        PyObject *ent = PyDict_GetItemWithError(entries, name); /* borrowed */
        Py_DECREF(name);
        if (ent == NULL) {
            if (PyErr_Occurred())
                goto error;
            goto decline; /* a new name, or a folded line */
        }
        if (!PyTuple_Check(ent) || PyTuple_GET_SIZE(ent) != 2)
            goto decline;
        Py_ssize_t vs = colon + 1, ve = end;
        while (vs < ve && wire_ws(s[vs]))
            vs++;
        while (ve > vs && wire_ws(s[ve - 1]))
            ve--;
        PyObject *value = PyUnicode_Substring(block, vs, ve);
        if (value == NULL)
            goto error;
        PyObject *line = PyUnicode_Substring(block, pos, end);
        if (line == NULL) {
            Py_DECREF(value);
            goto error;
        }
        PyObject *item = PyList_New(4);
        if (item == NULL) {
            Py_DECREF(value);
            Py_DECREF(line);
            goto error;
        }
        PyObject *canonical = PyTuple_GET_ITEM(ent, 0), *written = PyTuple_GET_ITEM(ent, 1);
        Py_INCREF(canonical);
        Py_INCREF(written);
        PyList_SET_ITEM(item, 0, canonical);
        PyList_SET_ITEM(item, 1, value);
        PyList_SET_ITEM(item, 2, line);
        PyList_SET_ITEM(item, 3, written);
        int rc = PyList_Append(out, item);
        Py_DECREF(item);
        if (rc < 0)
            goto error;
        pos = lf + 1;
    }
    return out;
decline:
    Py_DECREF(out);
    Py_RETURN_NONE;
error:
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef scan_methods[] = {
    {"index_headers", (PyCFunction)(void (*)(void))index_headers, METH_FASTCALL,
     "index_headers(block, entries) -> list | None: the header-line index (see the module)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef scan_module = {
    PyModuleDef_HEAD_INIT, "siprouter.sip._scan",
    "The header-line index of a SIP message, in C (see siprouter.sip.message).", -1,
    scan_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__scan(void) { return PyModule_Create(&scan_module); }
