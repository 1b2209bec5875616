# The other two parts of a scale-out deployment, for the cluster tests and the scale-out
# benchmark: a Redis server (own directory, append-only file on, a free loopback port) and
# nginx from deploy/nginx.conf.in (own prefix, loopback), each started and stopped here.
# Also a minimal Redis client (RESP2 over a socket) to look at the store's keys directly.
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def find_binary(name):
    """The path of a program, also in /usr/sbin (not on a non-root PATH); None when absent."""
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)),
                                      None)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} is not listening on {port} after {timeout} s")


class Resp:
    """Just enough of the Redis protocol to read and check keys."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.f = self.sock.makefile("rb")

    def close(self):
        self.f.close()
        self.sock.close()

    def __call__(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._read()

    def _read(self):
        line = self.f.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError(f"unexpected Redis reply {line!r}")

    def hgetall(self, key):
        r = self(b"HGETALL", key)
        return {r[i].decode(): r[i + 1] for i in range(0, len(r), 2)}

    def context_bytes(self, cid):
        """A ready context's file bytes, joined from its chunks."""
        meta = self.hgetall(f"kvzip:ctx:{cid}")
        blob = f"kvzip:blob:{cid}:{meta['version'].decode()}"
        return b"".join(self("HGET", blob, i) for i in range(int(meta["chunks"])))


class Redis:
    def __init__(self, dir, port=None):
        self.dir = str(dir)
        self.port = port or free_port()
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        self.proc = subprocess.Popen(
            [find_binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--appendonly", "yes", "--save", "", "--daemonize", "no", "--logfile", os.path.join(self.dir, "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc, "redis-server")
        deadline = time.time() + 30
        while True:  # loading the append-only file answers -LOADING until done
            try:
                c = Resp(self.port)
                try:
                    if c("PING") == "PONG":
                        return self
                finally:
                    c.close()
            except (OSError, RuntimeError):
                if time.time() > deadline:
                    raise
            time.sleep(0.05)

    def client(self):
        return Resp(self.port)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None


class Nginx:
    def __init__(self, prefix, upstreams, port=None):
        self.prefix = str(prefix)
        self.upstreams = list(upstreams)  # "127.0.0.1:PORT"
        self.port = port or free_port()
        self.proc = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        os.makedirs(self.prefix, exist_ok=True)
        with open(os.path.join(ROOT, "deploy", "nginx.conf.in")) as f:
            conf = f.read()
        user = ""
        if os.geteuid() == 0:
            import grp
            import pwd
            user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
        servers = "\n        ".join(f"server {u} max_fails=1 fail_timeout=5s;" for u in self.upstreams)
        conf = (conf.replace("@PREFIX@", self.prefix).replace("@USER@", user)
                .replace("@LISTEN@", f"127.0.0.1:{self.port}").replace("@SERVERS@", servers))
        path = os.path.join(self.prefix, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        self.log = open(os.path.join(self.prefix, "stderr.log"), "a")
        self.proc = subprocess.Popen([find_binary("nginx"), "-p", self.prefix, "-c", path, "-e",
                                      os.path.join(self.prefix, "error.log")],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc, "nginx")
        with urllib.request.urlopen(self.url + "/health", timeout=30) as r:
            assert r.status == 200
        return self

    def stop(self, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: finish the requests in flight
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None


def missing_programs():
    return [p for p in ("redis-server", "nginx") if not find_binary(p)]
