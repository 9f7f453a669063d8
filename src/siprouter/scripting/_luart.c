/* siprouter.scripting._luart: a small, direct binding of Lua 5.4 for the routing scripts.
 *
 * Why not a general binding (lupa): a routing script calls into Python a handful of times per
 * message, and each crossing is where the time goes. A general binding releases and retakes the
 * GIL around every call into Lua and for every call back into Python, builds argument tuples
 * and keyword dicts, looks up debug.traceback by name on every call and supports arbitrary
 * Python objects inside Lua. This module does only what the KSR layer needs (docs/lua.md):
 *
 *   - the GIL stays held while Lua runs: a route function runs for microseconds and the
 *     server runs one routing thread per process;
 *   - values that cross: nil/None, booleans, integers, floats, strings (UTF-8; bytes that are
 *     not UTF-8 cross with surrogateescape), Python dicts become new Lua tables (read-only
 *     use: KSR tables are built this way), Lua tables and functions come back as LuaRef
 *     handles; a Python callable becomes a Lua function (a C closure holding a reference);
 *   - a Python exception raised in a callable called from Lua becomes a Lua error carrying
 *     "ExceptionType: message"; when that error ends the outermost call, the original Python
 *     exception is raised from it (as lupa does), otherwise LuaError.
 *
 * Python interface:
 *   Runtime()                          a new Lua state with the standard libraries
 *   Runtime.execute(code, name, *args) load and run a chunk; its results (None, a value or a
 *                                      tuple)
 *   Runtime.globals()                  _G as a LuaRef
 *   Runtime.table(dict)                a new table
 *   Runtime.bind(func, state, n, name) a Lua function calling func(state.msg, *args), exactly
 *                                      n arguments (-1: any), errors naming `name`
 *   LuaRef(*args)                      call (functions and callables); results as execute()
 *   LuaRef[key], LuaRef.key            index (tables), LuaRef[key] = v, LuaRef.key = v
 *   LuaRef.type                        Lua's type name
 *   LuaError, LuaSyntaxError           errors
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static PyObject *LuaError;
static PyObject *LuaSyntaxError;

#define PYFUNC_MT "siprouter.pyfunc"

typedef struct {
    PyObject_HEAD
    lua_State *L;
    /* the Python exception raised in a callable called from Lua, for the outer call, and the
       text of the Lua error that carries it */
    PyObject *ptype, *pvalue, *ptb, *ptext;
} Runtime;

typedef struct {
    PyObject_HEAD
    Runtime *rt;
    int ref;
    vectorcallfunc vectorcall;
} LuaRef;

static PyTypeObject RuntimeType;
static PyTypeObject LuaRefType;

static int push_py(Runtime *rt, PyObject *o);
static PyObject *LuaRef_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames);

/* ---- Lua -> Python ------------------------------------------------------------------------ */

static PyObject *new_ref(Runtime *rt, int idx)
{
    LuaRef *r = PyObject_New(LuaRef, &LuaRefType);
    if (r == NULL)
        return NULL;
    lua_pushvalue(rt->L, idx);
    r->ref = luaL_ref(rt->L, LUA_REGISTRYINDEX);
    Py_INCREF(rt);
    r->rt = rt;
    r->vectorcall = LuaRef_vectorcall;
    return (PyObject *)r;
}

static PyObject *to_py(Runtime *rt, int idx)
{
    lua_State *L = rt->L;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
    case LUA_TNONE:
        Py_RETURN_NONE;
    case LUA_TBOOLEAN:
        return PyBool_FromLong(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return PyLong_FromLongLong((long long)lua_tointeger(L, idx));
        return PyFloat_FromDouble((double)lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return PyUnicode_DecodeUTF8(s, (Py_ssize_t)n, "surrogateescape");
    }
    default:
        return new_ref(rt, idx);
    }
}

/* ---- Python -> Lua ------------------------------------------------------------------------ */

static void clear_pending(Runtime *rt)
{
    Py_CLEAR(rt->ptype);
    Py_CLEAR(rt->pvalue);
    Py_CLEAR(rt->ptb);
    Py_CLEAR(rt->ptext);
}

static int pyfunc_gc(lua_State *L)
{
    PyObject **p = (PyObject **)luaL_checkudata(L, 1, PYFUNC_MT);
    if (*p != NULL) {
        PyObject *o = *p;
        *p = NULL;
        Py_DECREF(o);
    }
    return 0;
}

#define MAX_FAST_ARGS 8

/* Raise the pending Python exception as a Lua error: the exception is kept for the outer call,
   the Lua error carries its text. Never returns. */
static int python_error_to_lua(lua_State *L, Runtime *rt)
{
    PyObject *t, *v, *tb, *text = NULL;
    const char *msg = NULL;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (v != NULL) {
        text = PyUnicode_FromFormat("%s: %S", ((PyTypeObject *)t)->tp_name, v);
        if (text != NULL)
            msg = PyUnicode_AsUTF8(text);
        if (msg == NULL)
            PyErr_Clear();
    }
    if (msg == NULL) {
        Py_XDECREF(text);
        msg = "error in a Python function";
        text = PyUnicode_FromString(msg);
        if (text == NULL)
            PyErr_Clear();
    }
    clear_pending(rt);
    rt->ptype = t;
    rt->pvalue = v;
    rt->ptb = tb;
    rt->ptext = text; /* owned by rt now; msg points into it */
    lua_settop(L, 0);
    lua_pushstring(L, msg);
    return lua_error(L);
}

/* Call func(first, <the Lua arguments>) (first omitted when NULL; a new reference, consumed) and
   push its results; a Python exception becomes a Lua error. */
static int call_python(lua_State *L, Runtime *rt, PyObject *func, PyObject *first)
{
    int n = lua_gettop(L), i, k, total, nret = 0, failed = 0;
    PyObject *stack[MAX_FAST_ARGS + 1];
    PyObject **args = stack;
    PyObject *res = NULL;
    int off = first != NULL ? 1 : 0;
    total = n + off;
    if (total > MAX_FAST_ARGS + 1) {
        args = PyMem_Malloc(sizeof(PyObject *) * (size_t)total);
        if (args == NULL) {
            Py_XDECREF(first);
            PyErr_NoMemory();
            return python_error_to_lua(L, rt);
        }
    }
    if (first != NULL)
        args[0] = first;
    for (i = 0; i < n; i++) {
        args[off + i] = to_py(rt, i + 1);
        if (args[off + i] == NULL)
            break;
    }
    if (i == n)
        res = PyObject_Vectorcall(func, args, (size_t)total, NULL);
    for (k = off + i - 1; k >= 0; k--)
        Py_DECREF(args[k]);
    if (args != stack)
        PyMem_Free(args);
    if (res == NULL)
        return python_error_to_lua(L, rt);
    lua_settop(L, 0);
    if (res == Py_None) {
        nret = 0;
    } else if (PyTuple_CheckExact(res)) {
        Py_ssize_t j, m = PyTuple_GET_SIZE(res);
        if (m > 200 || !lua_checkstack(L, (int)m + 1)) {
            PyErr_SetString(PyExc_ValueError, "too many results for Lua");
            failed = 1;
        }
        for (j = 0; !failed && j < m; j++)
            failed = push_py(rt, PyTuple_GET_ITEM(res, j)) < 0;
        nret = (int)m;
    } else {
        failed = push_py(rt, res) < 0;
        nret = 1;
    }
    Py_DECREF(res);
    if (failed)
        return python_error_to_lua(L, rt);
    return nret;
}

/* the Lua side of a Python callable: upvalue 1 the userdata holding it, 2 the Runtime */
static int pyfunc_call(lua_State *L)
{
    PyObject **p = (PyObject **)lua_touserdata(L, lua_upvalueindex(1));
    Runtime *rt = (Runtime *)lua_touserdata(L, lua_upvalueindex(2));
    if (*p == NULL)
        return luaL_error(L, "call of a released Python function");
    return call_python(L, rt, *p, NULL);
}

static PyObject *str_msg; /* "msg" */

/* A function bound by Runtime.bind: func(state.msg, <arguments>), the argument count checked.
   Upvalues: 1 userdata holding func, 2 userdata holding state, 3 the Runtime, 4 the count
   (-1: any), 5 the name for errors. */
static int bound_call(lua_State *L)
{
    PyObject **pf = (PyObject **)lua_touserdata(L, lua_upvalueindex(1));
    PyObject **ps = (PyObject **)lua_touserdata(L, lua_upvalueindex(2));
    Runtime *rt = (Runtime *)lua_touserdata(L, lua_upvalueindex(3));
    lua_Integer want = lua_tointeger(L, lua_upvalueindex(4));
    int n = lua_gettop(L);
    PyObject *msg;
    if (*pf == NULL || *ps == NULL)
        return luaL_error(L, "call of a released Python function");
    if (want >= 0 && n != (int)want) {
        PyErr_Format(PyExc_TypeError, "%s() takes %d argument%s (%d given)",
                     lua_tostring(L, lua_upvalueindex(5)), (int)want, want == 1 ? "" : "s", n);
        return python_error_to_lua(L, rt);
    }
    msg = PyObject_GetAttr(*ps, str_msg);
    if (msg == NULL)
        return python_error_to_lua(L, rt);
    return call_python(L, rt, *pf, msg);
}

static void push_holder(lua_State *L, PyObject *o)
{
    PyObject **p = (PyObject **)lua_newuserdatauv(L, sizeof(PyObject *), 0);
    Py_INCREF(o);
    *p = o;
    luaL_setmetatable(L, PYFUNC_MT);
}

static int push_callable(Runtime *rt, PyObject *o)
{
    lua_State *L = rt->L;
    push_holder(L, o);
    lua_pushlightuserdata(L, rt);
    lua_pushcclosure(L, pyfunc_call, 2);
    return 0;
}

static int push_dict(Runtime *rt, PyObject *d, int level)
{
    lua_State *L = rt->L;
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    if (level > 20) {
        PyErr_SetString(PyExc_ValueError, "dict nested too deep for Lua");
        return -1;
    }
    if (!lua_checkstack(L, 4)) {
        PyErr_SetString(PyExc_MemoryError, "Lua stack overflow");
        return -1;
    }
    lua_createtable(L, 0, (int)PyDict_GET_SIZE(d));
    while (PyDict_Next(d, &pos, &k, &v)) {
        if (push_py(rt, k) < 0)
            goto fail;
        if (lua_isnil(L, -1)) {
            PyErr_SetString(PyExc_TypeError, "None cannot be a Lua table key");
            goto fail;
        }
        if (PyDict_Check(v) ? push_dict(rt, v, level + 1) < 0 : push_py(rt, v) < 0)
            goto fail;
        lua_rawset(L, -3);
    }
    return 0;
fail:
    return -1;
}

/* push o; -1 with a Python exception set when it cannot cross (the caller resets the stack) */
static int push_py(Runtime *rt, PyObject *o)
{
    lua_State *L = rt->L;
    if (!lua_checkstack(L, 2)) {
        PyErr_SetString(PyExc_MemoryError, "Lua stack overflow");
        return -1;
    }
    if (o == Py_None) {
        lua_pushnil(L);
    } else if (o == Py_True || o == Py_False) {
        lua_pushboolean(L, o == Py_True);
    } else if (PyLong_Check(o)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (overflow) {
            double d = PyLong_AsDouble(o);
            if (d == -1.0 && PyErr_Occurred())
                return -1;
            lua_pushnumber(L, (lua_Number)d);
        } else {
            if (v == -1 && PyErr_Occurred())
                return -1;
            lua_pushinteger(L, (lua_Integer)v);
        }
    } else if (PyUnicode_Check(o)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(o, &n);
        if (s == NULL) {
            /* lone surrogates (from surrogateescape): back to the bytes they stood for */
            PyObject *b;
            PyErr_Clear();
            b = PyUnicode_AsEncodedString(o, "utf-8", "surrogateescape");
            if (b == NULL)
                return -1;
            lua_pushlstring(L, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b));
            Py_DECREF(b);
        } else {
            lua_pushlstring(L, s, (size_t)n);
        }
    } else if (PyFloat_Check(o)) {
        lua_pushnumber(L, (lua_Number)PyFloat_AS_DOUBLE(o));
    } else if (PyBytes_Check(o)) {
        lua_pushlstring(L, PyBytes_AS_STRING(o), (size_t)PyBytes_GET_SIZE(o));
    } else if (Py_IS_TYPE(o, &LuaRefType)) {
        LuaRef *r = (LuaRef *)o;
        if (r->rt != rt) {
            PyErr_SetString(PyExc_ValueError, "a Lua value of another runtime");
            return -1;
        }
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);
    } else if (PyDict_Check(o)) {
        return push_dict(rt, o, 0);
    } else if (PyCallable_Check(o)) {
        return push_callable(rt, o);
    } else {
        PyErr_Format(PyExc_TypeError, "a %.100s cannot cross into Lua", Py_TYPE(o)->tp_name);
        return -1;
    }
    return 0;
}

/* ---- calls from Python into Lua ------------------------------------------------------------ */

static PyObject *lua_error_text(lua_State *L)
{
    const char *s;
    size_t n;
    if (lua_type(L, -1) == LUA_TSTRING) {
        s = lua_tolstring(L, -1, &n);
        return PyUnicode_DecodeUTF8(s, (Py_ssize_t)n, "replace");
    }
    s = luaL_tolstring(L, -1, &n); /* pushes */
    {
        PyObject *r = PyUnicode_DecodeUTF8(s, (Py_ssize_t)n, "replace");
        lua_pop(L, 1);
        return r;
    }
}

/* the function and its nargs arguments are on the stack above base; call, convert results */
static PyObject *call_on_stack(Runtime *rt, int base, int nargs)
{
    lua_State *L = rt->L;
    int status, nres, i;
    PyObject *r;
    clear_pending(rt);
    status = lua_pcall(L, nargs, LUA_MULTRET, 0);
    if (status != LUA_OK) {
        PyObject *text = lua_error_text(L);
        if (text != NULL && rt->pvalue != NULL && rt->ptext != NULL
            && PyUnicode_Compare(text, rt->ptext) == 0) {
            /* the error is the one a Python callable raised: raise its exception */
            PyErr_Restore(rt->ptype, rt->pvalue, rt->ptb);
            rt->ptype = rt->pvalue = rt->ptb = NULL;
            Py_CLEAR(rt->ptext);
        } else if (text != NULL) {
            PyErr_SetObject(LuaError, text);
        }
        Py_XDECREF(text);
        lua_settop(L, base);
        return NULL;
    }
    nres = lua_gettop(L) - base;
    if (nres == 0) {
        r = Py_None;
        Py_INCREF(r);
    } else if (nres == 1) {
        r = to_py(rt, base + 1);
    } else {
        r = PyTuple_New(nres);
        for (i = 0; r != NULL && i < nres; i++) {
            PyObject *v = to_py(rt, base + 1 + i);
            if (v == NULL) {
                Py_CLEAR(r);
                break;
            }
            PyTuple_SET_ITEM(r, i, v);
        }
    }
    lua_settop(L, base);
    return r;
}

static int push_args(Runtime *rt, PyObject *const *args, Py_ssize_t n)
{
    Py_ssize_t i;
    if (n > 200 || !lua_checkstack(rt->L, (int)n + 2)) {
        PyErr_SetString(PyExc_ValueError, "too many arguments for Lua");
        return -1;
    }
    for (i = 0; i < n; i++)
        if (push_py(rt, args[i]) < 0)
            return -1;
    return 0;
}

/* ---- LuaRef ---------------------------------------------------------------------------------- */

static void LuaRef_dealloc(LuaRef *self)
{
    if (self->rt != NULL) {
        if (self->rt->L != NULL)
            luaL_unref(self->rt->L, LUA_REGISTRYINDEX, self->ref);
        Py_DECREF(self->rt);
    }
    PyObject_Free(self);
}

static PyObject *LuaRef_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames)
{
    LuaRef *self = (LuaRef *)callable;
    Runtime *rt = self->rt;
    lua_State *L = rt->L;
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    int base;
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
        PyErr_SetString(PyExc_TypeError, "Lua functions take no keyword arguments");
        return NULL;
    }
    if (!lua_checkstack(L, 3)) {
        PyErr_SetString(PyExc_MemoryError, "Lua stack overflow");
        return NULL;
    }
    base = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, self->ref);
    if (push_args(rt, args, n) < 0) {
        lua_settop(L, base);
        return NULL;
    }
    return call_on_stack(rt, base, (int)n);
}

static PyObject *LuaRef_getitem(LuaRef *self, PyObject *key)
{
    lua_State *L = self->rt->L;
    int base = lua_gettop(L);
    PyObject *r;
    lua_rawgeti(L, LUA_REGISTRYINDEX, self->ref);
    if (!lua_istable(L, -1)) {
        lua_settop(L, base);
        PyErr_SetString(PyExc_TypeError, "not a Lua table");
        return NULL;
    }
    if (push_py(self->rt, key) < 0) {
        lua_settop(L, base);
        return NULL;
    }
    lua_rawget(L, -2);
    r = to_py(self->rt, -1);
    lua_settop(L, base);
    return r;
}

static int LuaRef_setitem(LuaRef *self, PyObject *key, PyObject *value)
{
    lua_State *L = self->rt->L;
    int base = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, self->ref);
    if (!lua_istable(L, -1)) {
        lua_settop(L, base);
        PyErr_SetString(PyExc_TypeError, "not a Lua table");
        return -1;
    }
    if (push_py(self->rt, key) < 0 || lua_isnil(L, -1)
        || push_py(self->rt, value != NULL ? value : Py_None) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "None cannot be a Lua table key");
        lua_settop(L, base);
        return -1;
    }
    lua_rawset(L, -3);
    lua_settop(L, base);
    return 0;
}

static PyObject *LuaRef_getattro(LuaRef *self, PyObject *name)
{
    PyObject *r = PyObject_GenericGetAttr((PyObject *)self, name);
    if (r != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError))
        return r;
    PyErr_Clear();
    return LuaRef_getitem(self, name);
}

static int LuaRef_setattro(LuaRef *self, PyObject *name, PyObject *value)
{
    return LuaRef_setitem(self, name, value);
}

static PyObject *LuaRef_type(LuaRef *self, void *closure)
{
    lua_State *L = self->rt->L;
    PyObject *r;
    lua_rawgeti(L, LUA_REGISTRYINDEX, self->ref);
    r = PyUnicode_FromString(lua_typename(L, lua_type(L, -1)));
    lua_pop(L, 1);
    return r;
}

static PyObject *LuaRef_repr(LuaRef *self)
{
    lua_State *L = self->rt->L;
    PyObject *r;
    lua_rawgeti(L, LUA_REGISTRYINDEX, self->ref);
    r = PyUnicode_FromFormat("<Lua %s %p>", lua_typename(L, lua_type(L, -1)),
                             lua_topointer(L, -1));
    lua_pop(L, 1);
    return r;
}

static PyMappingMethods LuaRef_mapping = {
    .mp_subscript = (binaryfunc)LuaRef_getitem,
    .mp_ass_subscript = (objobjargproc)LuaRef_setitem,
};

static PyGetSetDef LuaRef_getset[] = {
    {"type", (getter)LuaRef_type, NULL, "Lua's type name of the value", NULL},
    {NULL},
};

static PyTypeObject LuaRefType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "siprouter.scripting._luart.LuaRef",
    .tp_basicsize = sizeof(LuaRef),
    .tp_dealloc = (destructor)LuaRef_dealloc,
    .tp_vectorcall_offset = offsetof(LuaRef, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_repr = (reprfunc)LuaRef_repr,
    .tp_as_mapping = &LuaRef_mapping,
    .tp_getattro = (getattrofunc)LuaRef_getattro,
    .tp_setattro = (setattrofunc)LuaRef_setattro,
    .tp_getset = LuaRef_getset,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "A Lua value (table, function ...) held by a Runtime.",
};

/* ---- Runtime --------------------------------------------------------------------------------- */

static PyObject *Runtime_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    Runtime *self;
    if (PyTuple_GET_SIZE(args) != 0 || (kw != NULL && PyDict_GET_SIZE(kw) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Runtime() takes no arguments");
        return NULL;
    }
    self = (Runtime *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->L = luaL_newstate();
    if (self->L == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    luaL_openlibs(self->L);
    luaL_newmetatable(self->L, PYFUNC_MT);
    lua_pushcfunction(self->L, pyfunc_gc);
    lua_setfield(self->L, -2, "__gc");
    lua_pushliteral(self->L, "Python function");
    lua_setfield(self->L, -2, "__name");
    lua_pop(self->L, 1);
    return (PyObject *)self;
}

static void Runtime_dealloc(Runtime *self)
{
    if (self->L != NULL) {
        lua_State *L = self->L;
        self->L = NULL;
        lua_close(L);
    }
    clear_pending(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Runtime_execute(Runtime *self, PyObject *const *args, Py_ssize_t nargs)
{
    lua_State *L = self->L;
    const char *code, *name = "=script";
    Py_ssize_t n;
    int base, status;
    if (nargs < 1 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "execute(code: str, name: str = '=script', *args)");
        return NULL;
    }
    code = PyUnicode_AsUTF8AndSize(args[0], &n);
    if (code == NULL)
        return NULL;
    if (nargs >= 2) {
        if (!PyUnicode_Check(args[1])) {
            PyErr_SetString(PyExc_TypeError, "the chunk name must be a str");
            return NULL;
        }
        name = PyUnicode_AsUTF8(args[1]);
        if (name == NULL)
            return NULL;
    }
    base = lua_gettop(L);
    status = luaL_loadbufferx(L, code, (size_t)n, name, "t");
    if (status != LUA_OK) {
        PyObject *text = lua_error_text(L);
        lua_settop(L, base);
        if (text != NULL) {
            PyErr_SetObject(status == LUA_ERRSYNTAX ? LuaSyntaxError : LuaError, text);
            Py_DECREF(text);
        }
        return NULL;
    }
    if (nargs > 2 && push_args(self, args + 2, nargs - 2) < 0) {
        lua_settop(L, base);
        return NULL;
    }
    return call_on_stack(self, base, nargs > 2 ? (int)(nargs - 2) : 0);
}

static PyObject *Runtime_globals(Runtime *self, PyObject *unused)
{
    PyObject *r;
    lua_rawgeti(self->L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    r = new_ref(self, -1);
    lua_pop(self->L, 1);
    return r;
}

static PyObject *Runtime_table(Runtime *self, PyObject *d)
{
    int base = lua_gettop(self->L);
    PyObject *r;
    if (!PyDict_Check(d)) {
        PyErr_SetString(PyExc_TypeError, "table() takes a dict");
        return NULL;
    }
    if (push_dict(self, d, 0) < 0) {
        lua_settop(self->L, base);
        return NULL;
    }
    r = new_ref(self, -1);
    lua_settop(self->L, base);
    return r;
}

static PyObject *Runtime_bind(Runtime *self, PyObject *const *args, Py_ssize_t nargs)
{
    lua_State *L = self->L;
    const char *name;
    long count;
    PyObject *r;
    if (nargs != 4 || !PyCallable_Check(args[0]) || !PyLong_Check(args[2])
        || !PyUnicode_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "bind(func, state, nargs: int, name: str)");
        return NULL;
    }
    count = PyLong_AsLong(args[2]);
    if (count == -1 && PyErr_Occurred())
        return NULL;
    name = PyUnicode_AsUTF8(args[3]);
    if (name == NULL)
        return NULL;
    if (!lua_checkstack(L, 6)) {
        PyErr_SetString(PyExc_MemoryError, "Lua stack overflow");
        return NULL;
    }
    push_holder(L, args[0]);
    push_holder(L, args[1]);
    lua_pushlightuserdata(L, self);
    lua_pushinteger(L, (lua_Integer)count);
    lua_pushstring(L, name);
    lua_pushcclosure(L, bound_call, 5);
    r = new_ref(self, -1);
    lua_pop(L, 1);
    return r;
}

static PyMethodDef Runtime_methods[] = {
    {"bind", (PyCFunction)(void (*)(void))Runtime_bind, METH_FASTCALL,
     "bind(func, state, nargs, name): a Lua function calling func(state.msg, *args), "
     "with exactly nargs arguments (-1: any)"},
    {"execute", (PyCFunction)(void (*)(void))Runtime_execute, METH_FASTCALL,
     "execute(code, name='=script', *args): load and run a chunk, return its results"},
    {"globals", (PyCFunction)Runtime_globals, METH_NOARGS, "the global table"},
    {"table", (PyCFunction)Runtime_table, METH_O, "a new Lua table from a dict"},
    {NULL},
};

static PyTypeObject RuntimeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "siprouter.scripting._luart.Runtime",
    .tp_basicsize = sizeof(Runtime),
    .tp_new = Runtime_new,
    .tp_dealloc = (destructor)Runtime_dealloc,
    .tp_methods = Runtime_methods,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A Lua 5.4 state with the standard libraries.",
};

/* ---- module ---------------------------------------------------------------------------------- */

static struct PyModuleDef luart_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "siprouter.scripting._luart",
    .m_doc = "A small, direct Lua 5.4 binding for the routing scripts (see _luart.c).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__luart(void)
{
    PyObject *m;
    if (PyType_Ready(&RuntimeType) < 0 || PyType_Ready(&LuaRefType) < 0)
        return NULL;
    str_msg = PyUnicode_InternFromString("msg");
    if (str_msg == NULL)
        return NULL;
    m = PyModule_Create(&luart_module);
    if (m == NULL)
        return NULL;
    LuaError = PyErr_NewExceptionWithDoc("siprouter.scripting._luart.LuaError",
                                         "An error raised by Lua code.", NULL, NULL);
    if (LuaError == NULL)
        goto fail;
    LuaSyntaxError = PyErr_NewExceptionWithDoc("siprouter.scripting._luart.LuaSyntaxError",
                                               "A Lua chunk that does not compile.", LuaError,
                                               NULL);
    if (LuaSyntaxError == NULL)
        goto fail;
    Py_INCREF(LuaError);
    Py_INCREF(LuaSyntaxError);
    Py_INCREF(&RuntimeType);
    Py_INCREF(&LuaRefType);
    if (PyModule_AddObject(m, "LuaError", LuaError) < 0
        || PyModule_AddObject(m, "LuaSyntaxError", LuaSyntaxError) < 0
        || PyModule_AddObject(m, "Runtime", (PyObject *)&RuntimeType) < 0
        || PyModule_AddObject(m, "LuaRef", (PyObject *)&LuaRefType) < 0
        || PyModule_AddStringConstant(m, "LUA_VERSION", LUA_RELEASE) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
