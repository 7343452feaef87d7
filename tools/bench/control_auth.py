"""The benchmarks' side of the authenticated control port (roam-server --control runs a
Noise XX handshake on every connection and answers only keys it knows):

  lab_pool(roamctl, directory)   a pool of keys made with tools/lab_keys.py; every
                                 roam-server with --control gets pool.server_args(NAME),
                                 and every roamctl this process starts uses the pool's
                                 operator key ($ROAMCTL_KEY is set here).
  use_debian_python()            for drivers that speak the control port themselves:
                                 re-executes the driver under /usr/bin/python3, the only
                                 interpreter Debian's python3-dissononce imports under.
  OperatorConnection(addr, key)  an operator's control connection: the handshake done
                                 (tests/integration/control_port.py's SecureControl), then
                                 a socket-like object carrying the plaintext frame stream.

The handshake happens when the connection is opened, so a driver that opens its connection
before taking t0 (handover, scale) still has a move start with the write of one frame.
"""
import os
import socket
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEBIAN_PYTHON = "/usr/bin/python3"


def lab_pool(roamctl, directory):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from lab_keys import LabPool
    pool = LabPool(roamctl, directory)
    os.environ["ROAMCTL_KEY"] = pool.operator_key
    return pool


def use_debian_python():
    """Returns when dissononce imports; otherwise execs this script under /usr/bin/python3
    (same arguments, same pid), or exits 1 with what to install. Call it first in main(),
    before any thread or child process exists."""
    try:
        import dissononce  # noqa: F401
        return
    except ImportError:
        pass
    if os.path.realpath(sys.executable) != os.path.realpath(DEBIAN_PYTHON) and os.access(DEBIAN_PYTHON, os.X_OK):
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(DEBIAN_PYTHON, [DEBIAN_PYTHON, os.path.abspath(sys.argv[0])] + sys.argv[1:])
    print("%s: the control port needs python3-dissononce under %s (apt-get install python3-dissononce)" % (
        os.path.basename(sys.argv[0]), DEBIAN_PYTHON), file=sys.stderr)
    sys.exit(1)


class OperatorConnection:
    """A control-port connection as operator KEY_FILE (listed in the server's --operators),
    made in the calling thread's network namespace. Offers what the drivers use of a socket:
    sendall, recv, settimeout, close. Failures are OSError (socket.timeout on a timeout)."""

    def __init__(self, address, key_file, timeout):
        sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
        from control_port import SecureControl
        try:
            self.secure = SecureControl(address, key_file, None, timeout)
        except EOFError as e:
            raise OSError("control handshake with %s: the server closed (%s)" % (address, e))
        try:
            self.secure.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            self.secure.close()
            raise

    def settimeout(self, seconds):
        self.secure.sock.settimeout(seconds)

    def sendall(self, data):
        self.secure.sendall(data)

    def recv(self, n):
        try:
            return self.secure.recv(n)
        except EOFError as e:
            raise OSError("control connection closed inside a record (%s)" % e)
        except OSError:  # socket.timeout among them
            raise
        except Exception as e:  # a record that does not decrypt: the stream is lost
            raise OSError("control connection: bad record (%s)" % e)

    def close(self):
        self.secure.close()
