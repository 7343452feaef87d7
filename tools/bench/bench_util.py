"""Small helpers the Python benchmark drivers share (loopback ports, stopping processes)."""
import signal
import socket
import subprocess


def free_port(kind):
    """A port on 127.0.0.1 that was free a moment ago (socket.SOCK_STREAM or SOCK_DGRAM)."""
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def stop_processes(procs, grace=20):
    """SIGTERM to every process still running, then waits; SIGKILL after `grace` seconds."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
