#!/usr/bin/python3
"""Interop against a LIVE roam-server: an independent client side of the control channel,
written from docs/PROTOCOL.md alone (sections 2 and 3), with Debian's python3-dissononce
for Noise and the standard library for everything else. No Roamstack code runs on this
side; the server is the real roam-server on a TUN device.

Topology (as root): one network namespace of our own (unique name per run), a TUN device
in it with the kernel side on 198.18.44.1/24 and 198.18.44.3/24, roam-server on that
device at 198.18.44.2 (echo on 7000, control channel on 7001, control port on the
namespace's loopback 127.0.0.1:7100). This script enters the namespace (setns) and talks
to the server with KERNEL TCP sockets. The root namespace is never changed.

Covered (each an "ok" line):
  - Noise_XX_25519_ChaChaPoly_BLAKE2b with the prologue "roamstack control channel v1",
    us the initiator, handshake messages framed u16 length | message; the server's HELLO
    (version 2, its --host-id, capabilities 2, no certificate); its static key equals what
    `roamctl pubkey --key FILE` prints for the key file it was started with.
  - A different prologue: the server's second handshake message does not decrypt here.
  - Transport frames u16 length | u64 counter | AEAD, counter as nonce (4 zero bytes +
    64-bit little-endian) and as associated data (8 bytes big-endian); the server's
    frames count 0, 1, 2, ...; ours may arrive out of order (5 then 3 are both taken).
  - An unexpected message (HELLO after the handshake) -> ERROR 1; an authentic but
    undecodable message is dropped and the channel goes on.
  - REGISTER of a made-up id -> no answer at all (held as pending), nothing registered.
  - A real carrier: a kernel TCP connection to the echo port; its connection id is
    computed from the two ISNs (read with TCP_REPAIR / TCP_QUEUE_SEQ before any data),
    registered on the channel -> no answer, and the server's `registrations` counter
    (roamctl status) goes up by one: the id we computed is the id the server computed.
  - The same kind of connection from the other kernel address (198.18.44.3), registered
    on a channel from 198.18.44.1 -> ERROR 2 "connection is not yours" and
    `registrations_refused` goes up; registered on a channel from 198.18.44.3 -> accepted.
  - A frame with a corrupted tag, a replayed frame, and a frame older than the replay
    window (1984 counters) each make the server reset the channel (RST: ECONNRESET here);
    a frame exactly 1983 behind the highest is still taken.
  - roam-server exits 0 on SIGTERM afterwards.
Not covered: ACM, ACK and the NAT handover (they need a server move: tests/netns/
nat_handover_test.py and tests/integration/), segment MACs, the IK pattern (not used on
the wire today), and the control port beyond `roamctl status`.

Exit 0 passed, 1 failed, 77 skipped (not root, no iproute2, or python3-dissononce not
importable and not installable). No timed assertions: timeouts only bound the waiting.
"""
import base64
import ctypes
import importlib
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.environ.get("ROAMSTACK_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
ROAM_SERVER = os.environ.get("ROAM_SERVER", os.path.join(ROOT, "build", "apps", "roam-server"))
ROAMCTL = os.environ.get("ROAMCTL", os.path.join(ROOT, "build", "apps", "roamctl"))

SKIP = 77
NS = "rci%05d" % (os.getpid() % 100000)
TUN = "rci0"
KERNEL_A = "198.18.44.1"
KERNEL_B = "198.18.44.3"
SERVER = "198.18.44.2"
ECHO_PORT = 7000
CHANNEL_PORT = 7001
CONTROL = "127.0.0.1:7100"
HOST_ID = "interop-server"
WAIT = 10  # seconds: an upper bound for any one answer, never an assertion

# docs/PROTOCOL.md, section 2 and 3.
PROLOGUE = b"roamstack control channel v1"
PROTOCOL_VERSION = 2
CAPABILITY_OWNER_PROOF = 2  # PROTOCOL.md 3.2: the server checks owner proofs in carrier SYNs
T_HELLO, T_ACM, T_ACK, T_ERROR, T_REGISTER = 1, 2, 3, 4, 5
ERROR_UNEXPECTED, ERROR_NOT_YOURS = 1, 2
REPLAY_WINDOW = 1984

# Linux TCP_REPAIR (include/uapi/linux/tcp.h); Python's socket module does not name them.
TCP_REPAIR, TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ = 19, 20, 21
TCP_RECV_QUEUE, TCP_SEND_QUEUE = 1, 2
TCP_REPAIR_ON, TCP_REPAIR_OFF, TCP_REPAIR_OFF_NO_WP = 1, 0, -1
CLONE_NEWNET = 0x40000000


class Failure(Exception):
    pass


def log(*args):
    print(*args, flush=True)


def ok(text):
    log("ok   - " + text)


def check(condition, text):
    if not condition:
        raise Failure(text)


# ------------------------------------------------------------------ dissononce


def import_dissononce():
    """Returns the dissononce names we use, installing python3-dissononce when missing."""
    try:
        return _import_dissononce()
    except ImportError:
        pass
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        # Debian's packages import only under Debian's interpreter.
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "python3-dissononce"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        subprocess.run(install, env=env, capture_output=True)
    importlib.invalidate_caches()
    try:
        return _import_dissononce()
    except ImportError as e:
        log("SKIP: python3-dissononce is not importable and could not be installed (%s)" % e)
        sys.exit(SKIP)


def _import_dissononce():
    from dissononce.cipher.chachapoly import ChaChaPolyCipher
    from dissononce.dh.x25519.x25519 import X25519DH
    from dissononce.exceptions.decrypt import DecryptFailedException
    from dissononce.hash.blake2b import Blake2bHash
    from dissononce.processing.handshakepatterns.interactive.XX import XXHandshakePattern
    from dissononce.processing.impl.cipherstate import CipherState
    from dissononce.processing.impl.handshakestate import HandshakeState
    from dissononce.processing.impl.symmetricstate import SymmetricState
    return {
        "ChaChaPolyCipher": ChaChaPolyCipher, "X25519DH": X25519DH, "DecryptFailed": DecryptFailedException,
        "Blake2bHash": Blake2bHash, "XX": XXHandshakePattern, "CipherState": CipherState,
        "HandshakeState": HandshakeState, "SymmetricState": SymmetricState,
    }


N = None  # the dissononce names, once imported

# ------------------------------------------------------------------ messages (PROTOCOL.md 3)


def encode_hello(host_id, capabilities=0, version=PROTOCOL_VERSION, credential=b""):
    raw = host_id.encode()
    return (struct.pack(">BHB", T_HELLO, version, len(raw)) + raw + struct.pack(">IB", capabilities, len(credential))
            + credential)


def encode_register(ids):
    return struct.pack(">BH", T_REGISTER, len(ids)) + b"".join(struct.pack(">Q", i) for i in ids)


def decode_message(data):
    """(type, fields) for the messages a server sends a client; raises on anything else."""
    check(len(data) >= 1, "empty message")
    kind = data[0]
    if kind == T_HELLO:
        version, id_length = struct.unpack_from(">HB", data, 1)
        host_id = data[4:4 + id_length].decode()
        (capabilities, credential_length) = struct.unpack_from(">IB", data, 4 + id_length)
        check(len(data) == 9 + id_length + credential_length, "HELLO with trailing bytes")
        credential = data[9 + id_length:]
        return kind, {"version": version, "host_id": host_id, "capabilities": capabilities, "credential": credential}
    if kind == T_ERROR:
        code, text_length = struct.unpack_from(">HB", data, 1)
        check(len(data) == 4 + text_length, "ERROR of the wrong length")
        return kind, {"code": code, "text": data[4:].decode(errors="replace")}
    if kind == T_ACK:
        sequence, status = struct.unpack_from(">QB", data, 1)
        check(len(data) == 10, "ACK of the wrong length")
        return kind, {"sequence": sequence, "status": status}
    return kind, {"raw": data}


# ------------------------------------------------------------------ the channel (PROTOCOL.md 2)


def recv_exact(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError("connection closed after %d of %d bytes" % (len(out), n))
        out += chunk
    return out


def frame(body):
    return struct.pack(">H", len(body)) + body


def read_frame(sock):
    (length,) = struct.unpack(">H", recv_exact(sock, 2))
    return recv_exact(sock, length)


class Channel:
    """The client (initiator) end of one control channel over a kernel TCP socket."""

    def __init__(self, source, prologue=PROLOGUE, host_id="interop-peer"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(WAIT)
        self.sock.bind((source, 0))
        self.sock.connect((SERVER, CHANNEL_PORT))
        dh = N["X25519DH"]()
        self.static = dh.generate_keypair()
        hs = N["HandshakeState"](N["SymmetricState"](N["CipherState"](N["ChaChaPolyCipher"]()), N["Blake2bHash"]()),
                                 N["X25519DH"]())
        hs.initialize(N["XX"](), True, prologue, s=self.static)
        # -> e (payload empty: the first XX message is not encrypted)
        message = bytearray()
        hs.write_message(b"", message)
        self.sock.sendall(frame(bytes(message)))
        # <- e, ee, s, es + the server's HELLO
        payload = bytearray()
        hs.read_message(read_frame(self.sock), payload)
        kind, self.server_hello = decode_message(bytes(payload))
        check(kind == T_HELLO, "the server's handshake payload is not a HELLO: %r" % bytes(payload))
        # -> s, se + our HELLO
        message = bytearray()
        ciphers = hs.write_message(encode_hello(host_id), message)
        self.sock.sendall(frame(bytes(message)))
        check(ciphers is not None, "dissononce did not finish the handshake")
        self.send_cipher, self.receive_cipher = ciphers  # initiator: first sends, second receives
        self.server_static = hs.rs.data
        self.handshake_hash = hs.symmetricstate.get_handshake_hash()
        self.next_counter = 0
        self.expected_server_counter = 0

    def seal(self, plaintext, counter=None):
        """One transport frame: u16 length | u64 counter (BE) | ChaCha20-Poly1305 (AD = the counter bytes)."""
        if counter is None:
            counter = self.next_counter
        self.next_counter = max(self.next_counter, counter + 1)
        counter_bytes = struct.pack(">Q", counter)
        self.send_cipher.set_nonce(counter)
        return frame(counter_bytes + self.send_cipher.encrypt_with_ad(counter_bytes, plaintext))

    def send(self, plaintext, counter=None):
        data = self.seal(plaintext, counter)
        self.sock.sendall(data)
        return data

    def receive(self):
        body = read_frame(self.sock)
        check(len(body) >= 8 + 16, "server frame of %d bytes" % len(body))
        counter_bytes = body[:8]
        (counter,) = struct.unpack(">Q", counter_bytes)
        check(counter == self.expected_server_counter,
              "server frame counter %d, expected %d" % (counter, self.expected_server_counter))
        self.expected_server_counter += 1
        self.receive_cipher.set_nonce(counter)
        return decode_message(self.receive_cipher.decrypt_with_ad(counter_bytes, body[8:]))

    def expect_error(self, code, what):
        kind, fields = self.receive()
        check(kind == T_ERROR and fields["code"] == code,
              "%s: expected ERROR %d, got type %d %r" % (what, code, kind, fields))
        return fields

    def barrier(self, what):
        """A HELLO after the handshake is always answered ERROR 1: the answer proves the
        server processed everything we sent before it (frames are handled in order)."""
        self.send(encode_hello("interop-peer"))
        return self.expect_error(ERROR_UNEXPECTED, what)

    def expect_reset(self, what):
        """The server must reset the connection: recv gives ECONNRESET (or, at worst, EOF)."""
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return "resets the channel (ECONNRESET)"
        except socket.timeout:
            raise Failure("%s: the channel stayed open for %d s" % (what, WAIT))
        check(data == b"", "%s: the server answered %d bytes instead of closing" % (what, len(data)))
        raise Failure("%s: the server closed with FIN, not a reset" % what)

    def close(self):
        self.sock.close()


# ------------------------------------------------------------------ namespace plumbing


def sh(argv, check_rc=True):
    result = subprocess.run(argv, capture_output=True, text=True)
    if check_rc and result.returncode != 0:
        raise Failure("%s: exit %d: %s" % (" ".join(argv), result.returncode, result.stderr.strip()))
    return result


def setns(fd, what):
    """Moves this (single-threaded) process into the network namespace open as `fd`."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise Failure("setns(%s): %s" % (what, os.strerror(ctypes.get_errno())))


def status():
    result = sh([ROAMCTL, "status", "--server", CONTROL, "--timeout", str(WAIT)])
    return json.loads(result.stdout)


def wait_status(key, value, what):
    deadline = time.monotonic() + WAIT
    while True:
        current = status()
        if current[key] == value:
            return current
        if time.monotonic() > deadline:
            raise Failure("%s: status %s is %r, expected %r" % (what, key, current[key], value))
        time.sleep(0.05)


def isns_of(sock):
    """(client ISN, server ISN) of a connected socket that has neither sent nor received
    data: write_seq = ISN + 1 and rcv_nxt = the peer's ISN + 1 (TCP_REPAIR, CAP_NET_ADMIN)."""
    sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_ON)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)
        write_seq = sock.getsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ) & 0xFFFFFFFF
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)
        rcv_nxt = sock.getsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ) & 0xFFFFFFFF
    finally:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_OFF_NO_WP)  # no window probe
        except OSError:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_OFF)
    return (write_seq - 1) & 0xFFFFFFFF, (rcv_nxt - 1) & 0xFFFFFFFF


def connection_id(client_isn, server_isn):
    value = (client_isn << 32) | server_isn
    return value if value != 0 else 1


def open_carrier(source):
    """A kernel TCP connection to the echo port; returns (socket, connection id)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(WAIT)
    sock.bind((source, 0))
    sock.connect((SERVER, ECHO_PORT))
    client_isn, server_isn = isns_of(sock)
    sock.sendall(b"ping\n")
    check(recv_exact(sock, 5) == b"ping\n", "the echo carrier from %s did not echo" % source)
    return sock, connection_id(client_isn, server_isn)


# ------------------------------------------------------------------ the checks


def run_checks(pubkey):
    # The handshake, the HELLOs and the key.
    ch = Channel(KERNEL_A)
    hello = ch.server_hello
    check(hello == {"version": PROTOCOL_VERSION, "host_id": HOST_ID, "capabilities": CAPABILITY_OWNER_PROOF,
                    "credential": b""},
          "server HELLO %r" % hello)
    ok("Noise XX handshake with the v1 prologue; server HELLO version %d, host id %r, capabilities 2 (owner "
       "proof), no pool certificate" % (PROTOCOL_VERSION, HOST_ID))
    check(base64.b64encode(ch.server_static).decode() == pubkey,
          "server static key %s, roamctl pubkey %s" % (base64.b64encode(ch.server_static).decode(), pubkey))
    ok("the server's static key is the one `roamctl pubkey --key FILE` prints (%s)" % pubkey)
    wait_status("channels_established", 1, "after the first handshake")

    # Transport, unexpected messages, out-of-order counters, undecodable messages.
    fields = ch.barrier("HELLO after the handshake")
    check(fields["text"] == "unexpected message", "ERROR 1 text %r" % fields["text"])
    ch.send(encode_hello("interop-peer"), counter=5)
    ch.expect_error(ERROR_UNEXPECTED, "counter 5")
    ch.send(encode_hello("interop-peer"), counter=3)
    ch.expect_error(ERROR_UNEXPECTED, "counter 3 after 5")
    ok("transport both ways (server counters 0, 1, 2); counters 5 then 3 both accepted; "
       "HELLO after the handshake -> ERROR 1 'unexpected message'")
    dropped = status()["channel_frames_dropped"]
    ch.send(bytes([0x63, 1, 2, 3]), counter=6)
    ch.barrier("after an undecodable message")
    wait_status("channel_frames_dropped", dropped + 1, "an undecodable message")
    ok("an authentic but undecodable message is dropped and counted; the channel goes on")

    # REGISTER of an id the server does not have: held, no answer.
    made_up = random.getrandbits(64) | 1
    before = status()
    ch.send(encode_register([made_up]))
    ch.barrier("after REGISTER of a made-up id")  # the next frame is this ERROR 1, nothing else
    after = status()
    check(after["registrations"] == before["registrations"] and
          after["registrations_refused"] == before["registrations_refused"],
          "a made-up id changed the counters: %r -> %r" % (before, after))
    ok("REGISTER of a made-up id %016x: no answer (held as pending), nothing registered" % made_up)

    # A real carrier from the channel's own address: registered.
    carrier_a, id_a = open_carrier(KERNEL_A)
    ch.send(encode_register([id_a]))
    ch.barrier("after REGISTER of our own connection")
    wait_status("registrations", before["registrations"] + 1, "REGISTER of our connection %016x" % id_a)
    ok("a kernel TCP echo connection's id %016x (client ISN << 32 | server ISN, via TCP_REPAIR) "
       "registered: no answer, registrations +1" % id_a)

    # A carrier from the other address, named on a channel from the first: refused.
    carrier_b, id_b = open_carrier(KERNEL_B)
    ch.send(encode_register([id_b]))
    fields = ch.expect_error(ERROR_NOT_YOURS, "REGISTER of another host's connection")
    check(fields["text"] == "connection is not yours", "ERROR 2 text %r" % fields["text"])
    wait_status("registrations_refused", before["registrations_refused"] + 1, "REGISTER of another host's connection")
    ch_b = Channel(KERNEL_B)
    ch_b.send(encode_register([id_b]))
    ch_b.barrier("after REGISTER from the right host")
    wait_status("registrations", before["registrations"] + 2, "REGISTER from the connection's own host")
    ok("a connection of %s registered on a channel from %s -> ERROR 2 'connection is not yours', "
       "registrations_refused +1; on a channel from %s -> accepted" % (KERNEL_B, KERNEL_A, KERNEL_B))
    ch_b.close()

    # A corrupted tag: the channel is reset.
    dropped = status()["channel_frames_dropped"]
    data = bytearray(ch.seal(encode_hello("interop-peer")))
    data[-1] ^= 0x01
    ch.sock.sendall(bytes(data))
    how = ch.expect_reset("a frame with a corrupted tag")
    wait_status("channel_frames_dropped", dropped + 1, "a corrupted frame")
    ok("a frame with a corrupted tag: the server %s; frames dropped +1" % how)
    ch.close()

    # A replayed frame: the channel is reset.
    ch = Channel(KERNEL_A)
    data = ch.send(encode_hello("interop-peer"))
    ch.expect_error(ERROR_UNEXPECTED, "the original of the replayed frame")
    ch.sock.sendall(data)
    how = ch.expect_reset("a replayed frame")
    ok("a replayed frame (same counter, same bytes): the server %s" % how)
    ch.close()

    # The replay window: 1983 behind the highest is taken, 1984 behind is stale.
    ch = Channel(KERNEL_A)
    high = 3000
    ch.send(encode_hello("interop-peer"), counter=high)
    ch.expect_error(ERROR_UNEXPECTED, "counter %d" % high)
    ch.send(encode_hello("interop-peer"), counter=high - (REPLAY_WINDOW - 1))
    ch.expect_error(ERROR_UNEXPECTED, "counter %d" % (high - (REPLAY_WINDOW - 1)))
    ch.send(encode_hello("interop-peer"), counter=high - REPLAY_WINDOW)
    how = ch.expect_reset("a frame %d counters behind the highest" % REPLAY_WINDOW)
    ok("replay window: %d behind the highest accepted, %d behind: the server %s"
       % (REPLAY_WINDOW - 1, REPLAY_WINDOW, how))
    ch.close()

    # Another prologue: the handshake cannot complete.
    try:
        Channel(KERNEL_A, prologue=b"roamstack control channel v2")
        raise Failure("a handshake with another prologue completed")
    except N["DecryptFailed"]:
        ok("with the prologue 'roamstack control channel v2' the server's second handshake message "
           "does not decrypt")

    # The carriers still echo: nothing above disturbed them.
    for sock in (carrier_a, carrier_b):
        sock.sendall(b"still here\n")
        check(recv_exact(sock, 11) == b"still here\n", "a carrier stopped echoing")
        sock.close()
    final = status()
    check(final["registrations"] == before["registrations"] + 2, "final registrations %r" % final)
    ok("both carriers still echo; final status: channels_established %d, registrations %d, "
       "registrations_refused %d, channel_frames_dropped %d" % (
           final["channels_established"], final["registrations"], final["registrations_refused"],
           final["channel_frames_dropped"]))


def main():
    global N
    if os.geteuid() != 0 or shutil.which("ip") is None:
        log("SKIP: needs root and iproute2")
        return SKIP
    N = import_dissononce()
    for binary in (ROAM_SERVER, ROAMCTL):
        if not os.access(binary, os.X_OK):
            log("FAIL - %s is not built" % binary)
            return 1
    workdir = tempfile.mkdtemp(prefix="roam-ci-")
    server = None
    server_log = os.path.join(workdir, "server.log")
    original_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
    namespace_made = False
    code = 1
    try:
        key_file = os.path.join(workdir, "server.key")
        sh([ROAMCTL, "genkey", "--out", key_file])
        pubkey = sh([ROAMCTL, "pubkey", "--key", key_file]).stdout.strip()

        sh(["ip", "netns", "add", NS])
        namespace_made = True
        sh(["ip", "-n", NS, "link", "set", "lo", "up"])
        sh(["ip", "netns", "exec", NS, "ip", "tuntap", "add", "mode", "tun", "name", TUN])
        for setting in ("net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.%s.rp_filter=0" % TUN):
            sh(["ip", "netns", "exec", NS, "sysctl", "-qw", setting])
        sh(["ip", "-n", NS, "addr", "add", KERNEL_A + "/24", "dev", TUN])
        sh(["ip", "-n", NS, "addr", "add", KERNEL_B + "/24", "dev", TUN])
        sh(["ip", "-n", NS, "link", "set", TUN, "up"])
        # From here on this process (and what it starts) lives in the namespace.
        fd = os.open("/run/netns/" + NS, os.O_RDONLY)
        try:
            setns(fd, NS)
        finally:
            os.close(fd)

        with open(server_log, "w") as out:
            server = subprocess.Popen([ROAM_SERVER, "--link", "tun:" + TUN, "--addr", SERVER, "--key", key_file,
                                       "--host-id", HOST_ID, "--control", CONTROL, "--status-open", "echo"],
                                      stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + WAIT
        while "serving echo" not in open(server_log).read():
            if server.poll() is not None or time.monotonic() > deadline:
                raise Failure("roam-server did not start:\n" + open(server_log).read()[-2000:])
            time.sleep(0.05)
        ok("roam-server on %s (%s) in namespace %s" % (TUN, SERVER, NS))

        run_checks(pubkey)

        server.send_signal(signal.SIGTERM)
        try:
            rc = server.wait(15)
        except subprocess.TimeoutExpired:
            raise Failure("roam-server did not exit within 15 s of SIGTERM")
        check(rc == 0, "roam-server exited %d" % rc)
        ok("roam-server exited 0 on SIGTERM")
        code = 0
        log("# all checks passed")
    except (Failure, OSError, EOFError, ValueError, KeyError) as e:
        log("FAIL - %s: %s" % (type(e).__name__, e))
        if os.path.exists(server_log):
            log("# roam-server log (tail):\n" + open(server_log).read()[-3000:])
    except N["DecryptFailed"] as e:
        log("FAIL - a server frame did not decrypt: %r" % e)
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        try:
            setns(original_ns, "the original namespace")
        except Failure as e:
            log("# %s" % e)
        os.close(original_ns)
        if namespace_made:
            subprocess.run(["ip", "netns", "exec", NS, "ip", "tuntap", "del", "mode", "tun", "name", TUN],
                           capture_output=True)
            subprocess.run(["ip", "netns", "del", NS], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
