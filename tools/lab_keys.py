"""Keys for a lab or test pool: one pool signing key, one operator key, and per server an
identity key with its pool certificate, made with roamctl in a directory the caller owns.

    pool = LabPool(roamctl_path, directory)
    argv += pool.server_args("A")      # --key, --pool-cert, --operators
    env["ROAMCTL_KEY"] = pool.operator_key

Servers are created on first use of their name. outsider(name) makes a server key with a
certificate of ANOTHER pool (for tests of the membership checks); stranger_operator() a
roamctl key that no server lists.
"""
import os
import subprocess


class LabPool:
    def __init__(self, roamctl, directory):
        self.roamctl = roamctl
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self.pool_key = os.path.join(directory, "pool.key")
        self.pool_public = self._run("pool", "genkey", "--out", self.pool_key)
        self.operator_key = os.path.join(directory, "operator.key")
        self.operator_public = self._run("genkey", "--out", self.operator_key)
        self.operators = os.path.join(directory, "operators")
        with open(self.operators, "w") as f:
            f.write("# lab operators\n%s lab-operator\n" % self.operator_public)
        self.servers = {}  # name -> (key path, certificate path, public key)
        self._other_pool_key = None

    def _run(self, *args):
        out = subprocess.run([self.roamctl] + list(args), capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError("roamctl %s failed: %s" % (" ".join(args), out.stderr.strip()))
        return out.stdout.strip()

    def _member(self, name, pool_key):
        key = os.path.join(self.directory, name + ".key")
        cert = os.path.join(self.directory, name + ".cert")
        public = self._run("genkey", "--out", key)
        self._run("pool", "admit", "--pool-key", pool_key, "--member", public, "--out", cert)
        self.servers[name] = (key, cert, public)
        return self.servers[name]

    def server(self, name):
        """(key path, certificate path, public key) of server NAME, created on first use."""
        if name not in self.servers:
            self._member(name, self.pool_key)
        return self.servers[name]

    def server_args(self, name):
        key, cert, _ = self.server(name)
        return ["--key", key, "--pool-cert", cert, "--operators", self.operators]

    def outsider(self, name):
        """A server key certified by another pool: (key path, certificate path, public key)."""
        if self._other_pool_key is None:
            self._other_pool_key = os.path.join(self.directory, "other-pool.key")
            self._run("pool", "genkey", "--out", self._other_pool_key)
        return self._member(name, self._other_pool_key)

    def stranger_operator(self):
        """A roamctl key listed nowhere."""
        path = os.path.join(self.directory, "stranger.key")
        if not os.path.exists(path):
            self._run("genkey", "--out", path)
        return path
