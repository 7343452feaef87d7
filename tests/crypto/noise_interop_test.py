#!/usr/bin/python3
"""Interop: Roamstack's Noise XX and IK against an independent implementation, Debian's
python3-dissononce, in both roles. The C++ side runs as tests/crypto/noise_peer over a
pipe. Checks: both sides derive the same handshake hash, each learns the other's static
key, handshake payloads arrive, and one transport message each way decrypts. Also: a
flipped bit in a handshake message makes our side fail (exit 1), not accept.
Run with Debian's /usr/bin/python3 (dissononce is a Debian package)."""
import base64
import os
import struct
import subprocess
import sys

from dissononce.cipher.chachapoly import ChaChaPolyCipher
from dissononce.dh.x25519.x25519 import X25519DH
from dissononce.dh.x25519.public import PublicKey
from dissononce.hash.blake2b import Blake2bHash
from dissononce.processing.handshakepatterns.interactive.IK import IKHandshakePattern
from dissononce.processing.handshakepatterns.interactive.XX import XXHandshakePattern
from dissononce.processing.impl.cipherstate import CipherState
from dissononce.processing.impl.handshakestate import HandshakeState
from dissononce.processing.impl.symmetricstate import SymmetricState

PEER = os.environ.get("NOISE_PEER", os.path.join(os.path.dirname(__file__), "..", "..", "build", "tests", "noise_peer"))
PROLOGUE = b"roamstack interop"


def frame(data):
    return struct.pack(">H", len(data)) + data


def read_frame(stream):
    header = stream.read(2)
    if len(header) != 2:
        raise RuntimeError("noise_peer closed the pipe")
    (length,) = struct.unpack(">H", header)
    return stream.read(length)


def run(pattern_name, our_role, corrupt=False):
    dh = X25519DH()
    theirs = dh.generate_keypair()
    ours = dh.generate_keypair()
    ours_b64 = base64.b64encode(ours.private.data).decode()
    pattern = XXHandshakePattern() if pattern_name == "xx" else IKHandshakePattern()
    their_role_initiator = our_role == "responder"
    args = [PEER, pattern_name, our_role, ours_b64]
    if pattern_name == "ik" and our_role == "initiator":
        args.append(base64.b64encode(theirs.public.data).decode())
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    hs = HandshakeState(SymmetricState(CipherState(ChaChaPolyCipher()), Blake2bHash()), X25519DH())
    rs = PublicKey(ours.public.data) if (pattern_name == "ik" and their_role_initiator) else None
    hs.initialize(pattern, their_role_initiator, PROLOGUE, s=theirs, rs=rs)
    messages = 3 if pattern_name == "xx" else 2
    ours_to_write = [i for i in range(messages) if (i % 2 == 0) == their_role_initiator]
    corrupt_index = ours_to_write[-1]  # the last message dissononce writes
    ciphers = None
    payloads = []
    for i in range(messages):
        initiator_sends = i % 2 == 0
        if initiator_sends == their_role_initiator:
            buf = bytearray()
            ciphers = hs.write_message(b"hello from dissononce", buf)
            if corrupt and i == corrupt_index:
                buf[-1] ^= 1
            proc.stdin.write(frame(bytes(buf)))
            proc.stdin.flush()
            if corrupt and i == corrupt_index:
                break  # our side must refuse it; nothing follows
        else:
            payload = bytearray()
            ciphers = hs.read_message(read_frame(proc.stdout), payload)
            payloads.append(bytes(payload))
    if corrupt:
        proc.stdin.close()
        code = proc.wait(10)
        err = proc.stderr.read().decode()
        assert code == 1 and "authentication failed" in err, (code, err)
        return "refused a corrupted message: %s" % err.strip().splitlines()[-1]
    send, receive = (ciphers[0], ciphers[1]) if their_role_initiator else (ciphers[1], ciphers[0])
    proc.stdin.write(frame(send.encrypt_with_ad(b"", b"ping over the transport")))
    proc.stdin.flush()
    reply = receive.decrypt_with_ad(b"", read_frame(proc.stdout))
    code = proc.wait(10)
    err = proc.stderr.read().decode()
    assert code == 0, (code, err)
    assert reply == b"echo:ping over the transport", reply
    assert all(p == ("hello from the roamstack %s" % our_role).encode() for p in payloads), payloads
    assert "payload hello from dissononce" in err, err
    line = [l for l in err.splitlines() if l.startswith("hash ")][0]
    _, our_hash, _, remote = line.split()
    assert bytes.fromhex(our_hash) == hs.symmetricstate.get_handshake_hash(), "handshake hashes differ"
    assert base64.b64decode(remote) == theirs.public.data, "our side learned the wrong static key"
    assert hs.rs.data == ours.public.data, "dissononce learned the wrong static key"
    return "same handshake hash, static keys learned, transport both ways"


def main():
    failures = 0
    for pattern in ("xx", "ik"):
        for role in ("initiator", "responder"):
            for corrupt in (False, True):
                label = "%s, roamstack %s%s" % (pattern.upper(), role, ", corrupted" if corrupt else "")
                try:
                    print("ok   - %s: %s" % (label, run(pattern, role, corrupt)), flush=True)
                except Exception as e:  # noqa: BLE001: report every case
                    failures += 1
                    print("FAIL - %s: %r" % (label, e), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
