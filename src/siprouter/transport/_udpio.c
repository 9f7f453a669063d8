/* siprouter.transport._udpio: the system calls of a UDP listener, in C.
 *
 * The asyncio datagram transport costs about 6,000 instructions per datagram received: the
 * source address is formatted with snprintf into a new str each time, a tuple is built, the
 * protocol is called through a generic call, and libuv reads until EAGAIN (two recvmsg calls
 * for one datagram). These two functions do the same work for the TransportManager's UDP
 * listeners, which watch their sockets with loop.add_reader:
 *
 * recv(fd, handler, make_endpoint, cache) -> int
 *     Reads up to BATCH waiting datagrams with one recvmmsg call (MSG_DONTWAIT) and calls
 *     handler(data, endpoint) for each, in order. Returns how many were read (0: none was
 *     waiting). `endpoint` is taken from `cache` (a dict) under a key made of the source
 *     address and port; on a miss make_endpoint(host, port) makes it, host as inet_ntop writes
 *     it (a dotted quad, or an IPv6 address without brackets), and the cache keeps it (it is
 *     emptied when it reaches CACHE_MAX entries). A datagram cut to the buffer (MSG_TRUNC) is
 *     passed with the BUFSIZE bytes read, so it is still seen as too large. An error of the
 *     call other than EAGAIN/EWOULDBLOCK/EINTR raises OSError. When the handler raises, the
 *     datagrams after it in the batch are dropped and the exception propagates (the handler
 *     given by the TransportManager catches every Exception itself).
 *
 * send(fd, data, host, port) -> int
 *     One sendto to an IP literal: 0 when the kernel took the datagram, the errno when it
 *     did not, -1 when `host` is not an address inet_pton reads (an IPv6 address with a zone,
 *     a name); the caller then sends it with socket.sendto.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#define BATCH 8
#define BUFSIZE 65536
#define CACHE_MAX 8192

static unsigned char bufs[BATCH][BUFSIZE];

/* the file descriptor in `o` (an int), or -1 with an exception set */
static int fd_of(PyObject *o) {
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < 0 || v > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "not a file descriptor");
        return -1;
    }
    return (int)v;
}

/* the cache key of a source address: an int for IPv4, bytes for IPv6 */
static PyObject *addr_key(const struct sockaddr_storage *ss) {
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        unsigned long long k = ((unsigned long long)ntohl(a->sin_addr.s_addr) << 16)
                               | ntohs(a->sin_port);
        return PyLong_FromUnsignedLongLong(k);
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        unsigned char k[16 + 2];
        memcpy(k, &a->sin6_addr, 16);
        memcpy(k + 16, &a->sin6_port, 2);
        return PyBytes_FromStringAndSize((const char *)k, sizeof(k));
    }
    PyErr_Format(PyExc_OSError, "recvmmsg gave an address of family %d", (int)ss->ss_family);
    return NULL;
}

/* make_endpoint(host, port) for a source address */
static PyObject *new_endpoint(PyObject *make, const struct sockaddr_storage *ss) {
    char host[INET6_ADDRSTRLEN];
    int port;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        if (inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        port = ntohs(a->sin_port);
    } else {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        if (inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        port = ntohs(a->sin6_port);
    }
    return PyObject_CallFunction(make, "si", host, port);
}

static PyObject *udp_recv(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    static const char sig[] = "recv(fd: int, handler, make_endpoint, cache: dict)";
    if (nargs != 4 || !PyLong_Check(args[0]) || !PyDict_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, sig);
        return NULL;
    }
    int fd = fd_of(args[0]);
    if (fd < 0)
        return NULL;
    PyObject *handler = args[1], *make = args[2], *cache = args[3];

    struct mmsghdr msgs[BATCH];
    struct iovec iovs[BATCH];
    struct sockaddr_storage addrs[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iovs[i].iov_base = bufs[i];
        iovs[i].iov_len = BUFSIZE;
        memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
        msgs[i].msg_hdr.msg_name = &addrs[i];
        msgs[i].msg_hdr.msg_namelen = sizeof(addrs[i]);
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int n;
    do {
        n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return PyLong_FromLong(0);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    /* every datagram into a bytes object first: the handler may run the loop's callbacks,
     * never this function again, but the buffers are static */
    PyObject *data[BATCH];
    for (int i = 0; i < n; i++) {
        data[i] = PyBytes_FromStringAndSize((const char *)bufs[i], (Py_ssize_t)msgs[i].msg_len);
        if (data[i] == NULL) {
            for (int j = 0; j < i; j++)
                Py_DECREF(data[j]);
            return NULL;
        }
    }
    int i = 0;
    for (; i < n; i++) {
        PyObject *key = addr_key(&addrs[i]);
        if (key == NULL)
            goto fail;
        PyObject *ep = PyDict_GetItemWithError(cache, key); /* borrowed */
        if (ep != NULL) {
            Py_INCREF(ep);
        } else if (PyErr_Occurred()) {
            Py_DECREF(key);
            goto fail;
        } else {
            ep = new_endpoint(make, &addrs[i]);
            if (ep != NULL && PyDict_GET_SIZE(cache) >= CACHE_MAX)
                PyDict_Clear(cache);
            if (ep == NULL || PyDict_SetItem(cache, key, ep) < 0) {
                Py_XDECREF(ep);
                Py_DECREF(key);
                goto fail;
            }
        }
        Py_DECREF(key);
        PyObject *call_args[2] = {data[i], ep};
        PyObject *r = PyObject_Vectorcall(handler, call_args, 2, NULL);
        Py_DECREF(ep);
        Py_CLEAR(data[i]);
        if (r == NULL) {
            i++;
            goto fail;
        }
        Py_DECREF(r);
    }
    return PyLong_FromLong(n);
fail:
    for (; i < n; i++)
        Py_XDECREF(data[i]);
    return NULL;
}

static PyObject *udp_send(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    static const char sig[] = "send(fd: int, data: bytes, host: str, port: int)";
    if (nargs != 4 || !PyLong_Check(args[0]) || !PyBytes_Check(args[1])
        || !PyUnicode_Check(args[2]) || !PyLong_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, sig);
        return NULL;
    }
    int fd = fd_of(args[0]);
    if (fd < 0)
        return NULL;
    long port = PyLong_AsLong(args[3]);
    if (port == -1 && PyErr_Occurred())
        return NULL;
    if (port < 0 || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "port out of range 0-65535");
        return NULL;
    }
    Py_ssize_t hlen;
    const char *host = PyUnicode_AsUTF8AndSize(args[2], &hlen);
    if (host == NULL)
        return NULL;
    struct sockaddr_storage ss;
    socklen_t slen;
    memset(&ss, 0, sizeof(ss));
    if (memchr(host, ':', (size_t)hlen) == NULL) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            return PyLong_FromLong(-1);
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        slen = sizeof(*a);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            return PyLong_FromLong(-1);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        slen = sizeof(*a);
    }
    ssize_t rc;
    do {
        rc = sendto(fd, PyBytes_AS_STRING(args[1]), (size_t)PyBytes_GET_SIZE(args[1]),
                    MSG_DONTWAIT, (struct sockaddr *)&ss, slen);
    } while (rc < 0 && errno == EINTR);
    return PyLong_FromLong(rc < 0 ? errno : 0);
}

static PyMethodDef udpio_methods[] = {
    {"recv", (PyCFunction)(void (*)(void))udp_recv, METH_FASTCALL,
     "recv(fd, handler, make_endpoint, cache) -> int: read waiting datagrams (see the module)."},
    {"send", (PyCFunction)(void (*)(void))udp_send, METH_FASTCALL,
     "send(fd, data, host, port) -> int: one sendto; 0, an errno, or -1 (see the module)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef udpio_module = {
    PyModuleDef_HEAD_INIT, "siprouter.transport._udpio",
    "The system calls of a UDP listener, in C (see siprouter.transport.manager).", -1,
    udpio_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__udpio(void) {
    return PyModule_Create(&udpio_module);
}
