#!/usr/bin/env python3
"""The Roamstack demo: a live TCP connection survives its server moving to another host.

Two roam-servers (A at 198.18.12.2, B at 198.18.13.2) and a roam-client (198.18.11.2)
talk over IP-in-UDP links on loopback: no privilege. A kernel TCP client pushes a file
through the client's forward to A's echo app and reads it back; while the bytes flow,
`roamctl migrate` moves the server end of the connection A -> B -> A -> B. The kernel
client never notices: the demo prints each move, the throughput, and whether the echoed
bytes hash the same as the file. Cleans up on any exit."""
import argparse, hashlib, os, re, shutil, socket, subprocess, sys, tempfile, threading, time


def free_port(kind):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, deadline):
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="directory holding roam-server, roam-client and roamctl")
    ap.add_argument("--bytes", type=int, default=64 * 1024 * 1024, help="file size (default 64 MiB)")
    ap.add_argument("--moves", type=int, default=3, help="server moves during the transfer (default 3)")
    args = ap.parse_args()

    udp = {n: free_port(socket.SOCK_DGRAM) for n in ("client", "a", "b")}
    control = {n: f"127.0.0.1:{free_port(socket.SOCK_STREAM)}" for n in ("a", "b")}
    forward = free_port(socket.SOCK_STREAM)
    address = {"client": "198.18.11.2", "a": "198.18.12.2", "b": "198.18.13.2"}
    logs = tempfile.mkdtemp(prefix="roamstack-demo-")
    # A pool of two servers and one operator key (tools/lab_keys.py): the control port only
    # obeys an operator, and a server moves sessions only to a member of its pool.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from lab_keys import LabPool
    pool = LabPool(f"{args.bin}/roamctl", os.path.join(logs, "keys"))
    print(f"demo: pool {pool.pool_public}; operator key {pool.operator_key}")
    procs = []
    ok = False
    try:
        commands = {}
        for n in ("a", "b"):
            commands["server " + n.upper()] = [
                f"{args.bin}/roam-server", "--link", f"udp:127.0.0.1:{udp[n]}", "--addr", address[n],
                "--route", f"198.18.11.0/24=127.0.0.1:{udp['client']}", "--control", control[n]] + pool.server_args(n.upper()) + ["echo"]
        commands["client"] = [
            f"{args.bin}/roam-client", "--link", f"udp:127.0.0.1:{udp['client']}", "--addr", address["client"],
            "--route", f"198.18.12.0/24=127.0.0.1:{udp['a']}", "--route", f"198.18.13.0/24=127.0.0.1:{udp['b']}",
            "-L", f"127.0.0.1:{forward}:{address['a']}:7000"]
        for name, cmd in commands.items():
            print(f"demo: {name}: {' '.join(cmd[1:])}")
            procs.append(subprocess.Popen(cmd, stderr=open(os.path.join(logs, name.replace(' ', '_') + ".log"), "w")))
        if not wait_for_port(forward, time.time() + 10):
            print("demo: the client's forward never opened; logs in", logs)
            return 1

        data = os.urandom(args.bytes)
        sent_hash = hashlib.sha256(data).hexdigest()
        sock = socket.create_connection(("127.0.0.1", forward))
        received = hashlib.sha256()
        count = 0
        start = time.time()
        errors = []

        def writer():
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            except OSError as e:
                errors.append(e)

        t = threading.Thread(target=writer)
        t.start()
        moves = []
        where, other = "a", "b"
        while True:
            try:
                chunk = sock.recv(1 << 20)
            except OSError as e:
                errors.append(e)
                break
            if not chunk:
                break
            received.update(chunk)
            count += len(chunk)
            if len(moves) < args.moves and count >= (len(moves) + 1) * args.bytes // (args.moves + 1):
                out = subprocess.run([f"{args.bin}/roamctl", "migrate", "--from", control[where], "--to", control[other],
                                      "--key", pool.operator_key],
                                     capture_output=True, text=True, timeout=60)
                line = (out.stdout or out.stderr).strip()
                print(f"demo: at {count >> 20} MiB echoed: server {where.upper()} -> {other.upper()}: {line}")
                moves.append(out.returncode == 0)
                where, other = other, where
        elapsed = time.time() - start
        t.join()
        sock.close()
        match = received.hexdigest() == sent_hash and count == args.bytes and not errors
        mbit = args.bytes * 8 * 2 / elapsed / 1e6
        print(f"demo: pushed {args.bytes >> 20} MiB through the forward and back in {elapsed:.2f} s "
              f"({mbit:.0f} Mbit/s both directions together), across {sum(moves)} server moves")
        print(f"demo: the connection now lives on server {where.upper()} ({address[where]}); the kernel client "
              f"{'saw an error: ' + str(errors[0]) if errors else 'never noticed'}")
        print(f"demo: sha256 sent {sent_hash[:16]}... received {received.hexdigest()[:16]}... -> "
              f"{'MATCH' if match else 'MISMATCH'}")
        with open(os.path.join(logs, "client.log")) as f:
            client_log = f.read()
        followed = client_log.count("connection(s) follow (ACM")
        print(f"demo: the client followed {followed} authenticated Address Change Messages, each on its Noise "
              f"channel to the server it was leaving")
        handovers = re.findall(r"handover to \S+: 1 of 1 connection\(s\) answered in ([\d.]+) ms", client_log)
        if handovers:
            print(f"demo: each move opened the new path with an authenticated synthetic handshake (what a NAT in "
                  f"front of the client needs): SYN-ACK after {', '.join(handovers)} ms")
        ok = match and all(moves) and len(moves) == args.moves and followed == args.moves
        return 0 if ok else 1
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if ok:
            shutil.rmtree(logs, ignore_errors=True)
        else:
            print("demo: logs kept in", logs)


if __name__ == "__main__":
    sys.exit(main())
