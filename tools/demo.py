#!/usr/bin/env python3
"""The Roamstack demo: a server and a client over IP-in-UDP links on loopback (no
privilege), a file pushed through the client's forward to the server's echo app and back,
printed with its throughput and whether the hashes match. Cleans up on any exit."""
import argparse, hashlib, os, signal, socket, subprocess, sys, tempfile, threading, time


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
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", required=True, help="directory holding roam-server and roam-client")
    ap.add_argument("--bytes", type=int, default=64 * 1024 * 1024, help="file size (default 64 MiB)")
    args = ap.parse_args()

    server_udp, client_udp, forward = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    server_ip, client_ip = "198.18.12.2", "198.18.11.2"
    logs = tempfile.mkdtemp(prefix="roamstack-demo-")
    procs = []
    try:
        server_cmd = [f"{args.bin}/roam-server", "--link", f"udp:127.0.0.1:{server_udp}", "--addr", server_ip,
                      "--route", f"198.18.11.0/24=127.0.0.1:{client_udp}", "echo"]
        client_cmd = [f"{args.bin}/roam-client", "--link", f"udp:127.0.0.1:{client_udp}", "--addr", client_ip,
                      "--route", f"198.18.12.0/24=127.0.0.1:{server_udp}", "-L", f"127.0.0.1:{forward}:{server_ip}:7000"]
        print("demo: server:", " ".join(server_cmd[1:]))
        print("demo: client:", " ".join(client_cmd[1:]))
        for name, cmd in (("server", server_cmd), ("client", client_cmd)):
            procs.append(subprocess.Popen(cmd, stderr=open(os.path.join(logs, name + ".log"), "w")))
        if not wait_for_port(forward, time.time() + 10):
            print("demo: the client's forward never opened; logs in", logs)
            return 1

        data = os.urandom(args.bytes)
        sent_hash = hashlib.sha256(data).hexdigest()
        sock = socket.create_connection(("127.0.0.1", forward))
        received = hashlib.sha256()
        count = 0
        start = time.time()

        def writer():
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=writer)
        t.start()
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            received.update(chunk)
            count += len(chunk)
        t.join()
        seconds = time.time() - start
        sock.close()
        match = received.hexdigest() == sent_hash and count == len(data)
        mbps = len(data) * 8 / seconds / 1e6
        print(f"demo: pushed {len(data)} bytes through kernel -> roam-client -> lwIP carrier over UDP -> "
              f"roam-server echo and back in {seconds:.3f} s ({mbps:.0f} Mbit/s each way)")
        print(f"demo: sha256 sent     {sent_hash}")
        print(f"demo: sha256 received {received.hexdigest()} ({count} bytes)")
        print("demo: hashes match" if match else "demo: HASH MISMATCH")
        print("demo: (a server move mid-stream arrives with the migration core)")
        return 0 if match else 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
