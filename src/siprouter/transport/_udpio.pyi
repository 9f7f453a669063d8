from collections.abc import Callable

from ..sip.types import Endpoint

def recv(
    fd: int,
    handler: Callable[[bytes, Endpoint], None],
    make_endpoint: Callable[[str, int], Endpoint],
    cache: dict[object, Endpoint],
) -> int: ...
def send(fd: int, data: bytes, host: str, port: int) -> int: ...
