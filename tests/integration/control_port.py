"""An independent client of a roam-server's control port, written from docs/PROTOCOL.md
("Control port") with Debian's python3-dissononce (imports only under /usr/bin/python3):
Noise_XX_25519_ChaChaPoly_BLAKE2b, prologue "roamstack control port v1", u16-framed
handshake messages and transport records with implicit nonces; the responder's and the
initiator's handshake payloads are their pool certificates (or empty).

    with SecureControl("127.0.0.1:7100", key_file, cert_file) as sock:
        sock.sendall(frame_bytes)      # the plaintext control-frame stream
        data = sock.recv(4096)         # b"" once the server closed

It behaves like a socket for the tests' frame helpers. `raw=True` skips the handshake (the
plain socket, for attacks on the handshake itself).
"""
import base64
import socket
import struct

from dissononce.cipher.chachapoly import ChaChaPolyCipher
from dissononce.dh.private import PrivateKey
from dissononce.dh.x25519.x25519 import X25519DH
from dissononce.hash.blake2b import Blake2bHash
from dissononce.processing.handshakepatterns.interactive.XX import XXHandshakePattern
from dissononce.processing.impl.cipherstate import CipherState
from dissononce.processing.impl.handshakestate import HandshakeState
from dissononce.processing.impl.symmetricstate import SymmetricState

PROLOGUE = b"roamstack control port v1"
MAX_PLAINTEXT = 65535 - 16


def _recv_exact(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError("closed after %d of %d bytes" % (len(out), n))
        out += chunk
    return out


def _record(body):
    return struct.pack(">H", len(body)) + body


def _read_record(sock):
    (length,) = struct.unpack(">H", _recv_exact(sock, 2))
    return _recv_exact(sock, length)


def frame(frame_type, payload):
    """A control frame (PROTOCOL 4.1): u32 payload length | u8 type | payload."""
    return struct.pack("!IB", len(payload), frame_type) + payload


def read_reply(sock):
    """The next frame as (type, payload text), or None when the server closed first."""
    try:
        length, frame_type = struct.unpack("!IB", _recv_exact(sock, 5))
        payload = _recv_exact(sock, length)
    except EOFError:
        return None
    return frame_type, payload.decode("utf-8", "replace")


class SecureControl:
    def __init__(self, address, key_file=None, cert_file=None, timeout=30.0):
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.settimeout(timeout)
        dh = X25519DH()
        if key_file:
            with open(key_file) as f:
                self.static = dh.generate_keypair(PrivateKey(base64.b64decode(f.read().strip())))
        else:
            self.static = dh.generate_keypair()
        credential = b""
        if cert_file:
            with open(cert_file) as f:
                credential = base64.b64decode(f.read().strip())
        hs = HandshakeState(SymmetricState(CipherState(ChaChaPolyCipher()), Blake2bHash()), X25519DH())
        hs.initialize(XXHandshakePattern(), True, PROLOGUE, s=self.static)
        message = bytearray()
        hs.write_message(b"", message)                  # -> e
        self.sock.sendall(_record(bytes(message)))
        payload = bytearray()
        hs.read_message(_read_record(self.sock), payload)  # <- e, ee, s, es + the server's certificate
        self.server_credential = bytes(payload)
        self.server_static = hs.rs.data
        message = bytearray()
        ciphers = hs.write_message(credential, message)  # -> s, se + our certificate
        self.sock.sendall(_record(bytes(message)))
        self.send_cipher, self.receive_cipher = ciphers
        self.plaintext = b""
        self.closed = False

    def sendall(self, data):
        out = b""
        for i in range(0, len(data), MAX_PLAINTEXT):
            out += _record(self.send_cipher.encrypt_with_ad(b"", data[i:i + MAX_PLAINTEXT]))
        self.sock.sendall(out)

    def recv(self, n):
        while not self.plaintext and not self.closed:
            header = self.sock.recv(2)
            if not header:
                self.closed = True
                break
            if len(header) == 1:
                header += _recv_exact(self.sock, 1)
            (length,) = struct.unpack(">H", header)
            self.plaintext += self.receive_cipher.decrypt_with_ad(b"", _recv_exact(self.sock, length))
        data, self.plaintext = self.plaintext[:n], self.plaintext[n:]
        return data

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
