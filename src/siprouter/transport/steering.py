"""Steering UDP responses to the worker that owns their transaction, inside the kernel.

Theory of operation (docs/workers.md, "Responses steered by the kernel")
------------------------------------------------------------------------
With worker processes every worker has its own UDP socket on the shared port (SO_REUSEPORT).
The kernel picks a socket by a hash of the source address, so a callee's responses all land on
the one worker its address hashes to, whichever worker sent the request. That worker would
have to parse each response and hand it to its owner.

A reuseport group accepts a classic BPF program (``SO_ATTACH_REUSEPORT_CBPF``) that sees the
UDP payload of every datagram and returns the index of the socket to deliver it to; any index
outside the group makes the kernel fall back to its hash. :func:`response_program` builds a
program that reads the top Via of a response where nearly every user agent writes it (the
first header line, ``Via: `` or ``v: ``, copied as we sent it) and returns the worker index
in its branch, ``z9hG4bKw<3 hex digits>`` (``runtime.ipc.branch_prefix``). Everything else --
requests, other layouts, branches of other proxies, datagrams too short to hold our Via -- gets
the hash as before, and the user-space hand-off stays the safety net. The program has no loops
(classic BPF allows only forward jumps): the end of the status line is found by testing each
offset in turn.

The socket index is the socket's position in the group: the order in which the sockets were
bound, as long as none leaves the group (a closed socket's slot is taken by the last one). So
the supervisor binds worker 0's socket first, then worker 1's ..., attaches the program, and
keeps every socket open for the life of the node; a restarted worker takes over its socket and
its slot. Datagrams that arrive for a worker while it restarts wait in its socket's queue.

No I/O here except :func:`attach` (one ``setsockopt``); the program is plain bytes.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Callable

__all__ = [
    "MAX_STATUS_LINE",
    "NO_SOCKET",
    "SO_ATTACH_REUSEPORT_CBPF",
    "Program",
    "attach",
    "response_program",
    "run_program",
    "via_prefix",
]

#: Linux <asm-generic/socket.h>
SO_ATTACH_REUSEPORT_CBPF = 51
#: what the program returns for "not ours to steer": out of any group, so the kernel hashes
NO_SOCKET = 0xFFFFFFFF
#: the status line's LF is looked for at offsets up to this (a longer reason phrase is hashed)
MAX_STATUS_LINE = 128
_MIN_STATUS_LINE = 12  # "SIP/2.0 200 " is 12 bytes; the LF comes after at least a CR
_MAX_INSNS = 4096  # BPF_MAXINSNS

# classic BPF opcodes (<linux/filter.h>)
_LD, _LDX, _ST, _ALU, _JMP, _RET, _MISC = 0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x07
_W, _H, _B = 0x00, 0x08, 0x10
_IMM, _ABS, _IND, _MEM, _LEN = 0x00, 0x20, 0x40, 0x60, 0x80
_ADD, _SUB, _LSH = 0x00, 0x10, 0x60
_K, _X = 0x00, 0x08
_JA, _JEQ, _JGT, _JGE = 0x00, 0x10, 0x20, 0x30
_RET_A = 0x10
_TAX, _TXA = 0x00, 0x80  # BPF_MISC: X = A, A = X

_INSN = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k


def via_prefix(hostport: str) -> bytes:
    """What our Via value starts with, up to the worker digits of its branch."""
    return f"SIP/2.0/UDP {hostport};branch=z9hG4bKw".encode("ascii")


class Program:
    """A classic BPF program under construction: instructions with symbolic jump targets."""

    def __init__(self) -> None:
        self._insns: list[tuple[int, int | str, int | str, int]] = []
        self._labels: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._insns)

    def label(self, name: str) -> None:
        self._labels[name] = len(self._insns)

    def op(self, code: int, k: int = 0) -> None:
        self._insns.append((code, 0, 0, k & 0xFFFFFFFF))

    def jump(self, code: int, k: int, jt: int | str, jf: int | str) -> None:
        """A conditional jump; ``jt`` / ``jf`` are label names or relative counts (0 = next)."""
        self._insns.append((code, jt, jf, k & 0xFFFFFFFF))

    def ja(self, target: str) -> None:
        """An unconditional jump to a label (any distance forward)."""
        self._insns.append((_JMP | _JA, target, 0, 0))

    def reject(self) -> None:
        self.op(_RET | _K, NO_SOCKET)

    def assemble(self) -> list[tuple[int, int, int, int]]:
        out: list[tuple[int, int, int, int]] = []
        for pc, (code, jt, jf, k) in enumerate(self._insns):
            if code == _JMP | _JA and isinstance(jt, str):
                out.append((code, 0, 0, self._labels[jt] - pc - 1))
                continue
            jt_off, jf_off = (self._offset(pc, j) for j in (jt, jf))
            out.append((code, jt_off, jf_off, k))
        if len(out) > _MAX_INSNS:
            raise ValueError(f"steering program too long ({len(out)} instructions)")
        return out

    def _offset(self, pc: int, target: int | str) -> int:
        if isinstance(target, int):
            return target
        off = self._labels[target] - pc - 1
        if not 0 <= off <= 255:
            raise ValueError(f"jump to {target} out of reach ({off})")
        return off

    def to_bytes(self) -> bytes:
        return b"".join(_INSN.pack(*i) for i in self.assemble())


def _word(data: bytes) -> int:
    return int.from_bytes(data, "big")


def _hex_digit_at_x(p: Program, offset: int, slot: int, n: str) -> None:
    """M[slot] = the value of the lowercase hex digit at X + offset (reject anything else);
    ``n`` names its labels."""
    p.op(_LD | _B | _IND, offset)
    p.jump(_JMP | _JGT | _K, ord("f"), 0, 1)
    p.reject()
    p.jump(_JMP | _JGE | _K, ord("a"), 0, f"{n}.dec")
    p.op(_ALU | _SUB | _K, ord("a") - 10)
    p.ja(f"{n}.store")
    p.label(f"{n}.dec")
    p.jump(_JMP | _JGT | _K, ord("9"), 0, 1)
    p.reject()
    p.jump(_JMP | _JGE | _K, ord("0"), 1, 0)
    p.reject()
    p.op(_ALU | _SUB | _K, ord("0"))
    p.label(f"{n}.store")
    p.op(_ST, slot)


def response_program(hostports: list[str], sockets: int) -> Program:
    """The steering program for one UDP port whose Via we write as one of ``hostports``.

    It returns the worker index of a response's top Via branch when that Via is ours and the
    index is below ``sockets``, else :data:`NO_SOCKET`."""
    if not hostports:
        raise ValueError("steering needs the address our Via carries")
    prefixes = [via_prefix(h) for h in hostports]
    longest = max(len(x) for x in prefixes)
    # every load stays inside the datagram: a classic BPF load past its end ends the program
    # with 0, which would pick socket 0 instead of the hash
    need = MAX_STATUS_LINE + 1 + len("Via: ") + longest + 3
    p = Program()
    p.op(_LD | _W | _LEN)
    p.jump(_JMP | _JGE | _K, need, 1, 0)
    p.reject()
    p.op(_LD | _W | _ABS, 0)
    p.jump(_JMP | _JEQ | _K, _word(b"SIP/"), 1, 0)
    p.reject()
    for pos in range(_MIN_STATUS_LINE, MAX_STATUS_LINE + 1):
        p.op(_LD | _B | _ABS, pos)
        p.jump(_JMP | _JEQ | _K, ord("\n"), 0, 2)
        p.op(_LDX | _W | _IMM, pos + 1)
        p.ja("header")
    p.reject()
    # X = the start of the first header line: "Via: " or "v: " moves X to the value
    p.label("header")
    _skip(p, b"Via: ", "compact")
    p.ja("value")
    p.label("compact")
    _skip(p, b"v: ", None)
    p.label("value")
    for i, prefix in enumerate(prefixes):
        # one block per address we advertise on this port; the first that matches decides
        p.label(f"via{i}")
        nxt = f"via{i + 1}" if i + 1 < len(prefixes) else None
        _expect_prefix(p, prefix, nxt)
        for d in range(3):
            _hex_digit_at_x(p, len(prefix) + d, d, f"via{i}.digit{d}")
        p.op(_LD | _MEM, 0)
        p.op(_ALU | _LSH | _K, 4)
        p.op(_MISC | _TAX)
        p.op(_LD | _MEM, 1)
        p.op(_ALU | _ADD | _X)
        p.op(_ALU | _LSH | _K, 4)
        p.op(_MISC | _TAX)
        p.op(_LD | _MEM, 2)
        p.op(_ALU | _ADD | _X)
        p.jump(_JMP | _JGE | _K, sockets, 0, 1)
        p.reject()
        p.op(_RET | _RET_A)
    return p


def _expect_prefix(p: Program, text: bytes, otherwise: str | None) -> None:
    """Go on when the bytes at X are ``text``; else jump to ``otherwise`` (or reject)."""
    i = 0
    while i < len(text):
        size = 4 if len(text) - i >= 4 else 2 if len(text) - i >= 2 else 1
        code = {4: _W, 2: _H, 1: _B}[size]
        p.op(_LD | code | _IND, i)
        p.jump(_JMP | _JEQ | _K, _word(text[i : i + size]), 1, 0)
        if otherwise is None:
            p.reject()
        else:
            p.ja(otherwise)
        i += size


def _skip(p: Program, text: bytes, otherwise: str | None) -> None:
    """Move X past ``text`` when the bytes at X are ``text``; else as :func:`_expect_prefix`."""
    _expect_prefix(p, text, otherwise)
    p.op(_MISC | _TXA)
    p.op(_ALU | _ADD | _K, len(text))
    p.op(_MISC | _TAX)


def attach(sock: socket.socket, program: Program) -> None:
    """Attach ``program`` to the reuseport group of ``sock`` (raises OSError when refused)."""
    code = program.to_bytes()
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HL", len(code) // _INSN.size, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


def run_program(program: Program, data: bytes) -> int:
    """Run ``program`` on ``data`` the way the kernel does (for tests and for reading it):
    returns what it returns, 0 for a load past the end."""
    insns = program.assemble()
    a = x = 0
    mem = [0] * 16
    pc = 0
    size_of = {_W: 4, _H: 2, _B: 1}

    def load(off: int, size: int) -> int | None:
        if off < 0 or off + size > len(data):
            return None
        return int.from_bytes(data[off : off + size], "big")

    alu: dict[int, Callable[[int, int], int]] = {
        _ADD: lambda u, v: u + v, _SUB: lambda u, v: u - v, _LSH: lambda u, v: u << v,
    }
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        cls = code & 0x07
        if cls == _LD:
            mode = code & 0xE0
            if mode == _LEN:
                a = len(data)
            elif mode == _MEM:
                a = mem[k]
            elif mode in (_ABS, _IND):
                v = load(k + (x if mode == _IND else 0), size_of[code & 0x18])
                if v is None:
                    return 0
                a = v
            else:
                a = k
        elif cls == _LDX:
            x = k
        elif cls == _ST:
            mem[k] = a
        elif cls == _ALU:
            a = alu[code & 0xF0](a, x if code & _X else k) & 0xFFFFFFFF
        elif cls == _JMP:
            op = code & 0xF0
            if op == _JA:
                pc += k
                continue
            hit = {_JEQ: a == k, _JGT: a > k, _JGE: a >= k}[op]
            pc += jt if hit else jf
        elif cls == _RET:
            return a if code & _RET_A else k
        elif cls == _MISC:
            if code & _TXA:
                a = x
            else:
                x = a
