#!/usr/bin/python3
"""A fake Docker daemon on a unix socket, for the error-path tests.

    fake_daemon.py SOCKET MODE LOG [INSPECT_JSON]

Prints "ready" on stdout once it listens. Every request line it receives is appended to LOG
(one per line) so that tests can check which URL paths the helper used. Modes:

  version:X    a well-behaved daemon whose /_ping says Api-Version X; answers /version, /info and
               any /images/NAME/json with INSPECT_JSON (a real `docker image inspect` entry)
  containerd   Api-Version 1.47, /info and image inspect as the containerd image store gives them
  garbage      answers every request with bytes that are not HTTP, then closes
  badjson      HTTP 200 everywhere, but the JSON bodies are not JSON
  truncated    announces a body longer than it sends, then closes
  status500    /_ping fine, everything else 500 {"message": "boom"}
  podman404    /_ping fine, image inspect 404 with Podman's body format
  hang         accepts, reads, never answers
  otherroot    like version:1.41, but /info's DockerRootDir is not where the layers are
  root=PATH    like version:1.41, with /info's DockerRootDir = PATH
  pullstall    image inspect 404; POST /images/create answers 200, one progress object, then
               nothing more on an open connection
  pullerror    image inspect 404; POST /images/create answers 200, progress, then an error object
  newer:MIN    a daemon newer than the helper: /_ping says Api-Version 1.52, and every
               versioned path below vMIN gets HTTP 400 "client version X is too old" (as
               Docker 29 answers); /version says MinAPIVersion MIN
"""
import json
import re
import socket
import sys
import threading

VERSION_PREFIX = re.compile(r"^/v[0-9]+(\.[0-9]+)*(/.*)$")

CONTAINERD_INFO = {
    "Driver": "overlayfs",
    "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]],
    "DockerRootDir": "/var/lib/docker",
}
OVERLAY2_INFO = {
    "Driver": "overlay2",
    "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"],
                     ["Native Overlay Diff", "true"], ["userxattr", "false"]],
    "DockerRootDir": "/var/lib/docker",
}


class Conn:
    def __init__(self, sock, log):
        self.sock = sock
        self.log = log
        self.buf = b""

    def read_request(self):
        """Returns the request line, or None when the peer closed."""
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        length = 0
        for h in lines[1:]:
            k, _, v = h.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v.strip())
        while len(self.buf) < length:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        self.buf = self.buf[length:]
        with open(self.log, "a") as f:
            f.write(lines[0] + "\n")
        return lines[0]

    def send(self, status, body, headers=(), ctype="application/json", length=None):
        if isinstance(body, str):
            body = body.encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found",
                  500: "Internal Server Error"}.get(status, "X")
        out = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {ctype}",
               f"Content-Length: {len(body) if length is None else length}", "Server: fake"]
        out += list(headers)
        self.sock.sendall(("\r\n".join(out) + "\r\n\r\n").encode() + body)


def _vtuple(v):
    return tuple(int(x) for x in v.split("."))


def serve(sock, mode, log, inspect):
    c = Conn(sock, log)
    try:
        while True:
            line = c.read_request()
            if line is None:
                return
            parts = line.split(" ")
            method, target = parts[0], parts[1] if len(parts) > 1 else "/"
            path = target.split("?", 1)[0]
            m = VERSION_PREFIX.match(path)
            asked = path[2:].split("/", 1)[0] if m else None
            if m:
                path = m.group(2)
            if mode.startswith("newer:") and asked is not None:
                minimum = mode.split(":", 1)[1]
                if _vtuple(asked) < _vtuple(minimum):
                    c.send(400, json.dumps({"message": f"client version {asked} is too old. "
                                            f"Minimum supported API version is {minimum}, please "
                                            "upgrade your client to a newer version"}),
                           headers=["Api-Version: 1.52"])
                    continue

            if mode == "hang":
                # Never answer; wait for the client to give up and close.
                while sock.recv(65536):
                    pass
                return
            if mode == "garbage":
                sock.sendall(b"\x00\xff\xfeTHIS IS NOT HTTP\r\n\r\n\x01\x02garbage")
                return
            if mode == "truncated":
                c.send(200, '{"Id": "sha256:', length=5000,
                       headers=["Api-Version: 1.41"])
                return

            min_api = "1.12"
            if mode.startswith("version:"):
                api = mode.split(":", 1)[1]
            elif mode.startswith("newer:"):
                api, min_api = "1.52", mode.split(":", 1)[1]
            elif mode == "otherroot" or mode.startswith("root="):
                api = "1.41"
            else:
                api = "1.47" if mode == "containerd" else "1.41"
            api_hdr = [f"Api-Version: {api}", "Docker-Experimental: false", "Ostype: linux"]

            if path == "/_ping":
                body = b"" if method == "HEAD" else b"OK"
                c.send(200, body, headers=api_hdr, ctype="text/plain; charset=utf-8")
                continue
            if mode == "badjson":
                c.send(200, "{this is : not json,,", headers=api_hdr)
                continue
            if mode == "status500":
                c.send(500, '{"message":"boom"}', headers=api_hdr)
                continue
            if path == "/version":
                c.send(200, json.dumps({"Version": "fake", "ApiVersion": api,
                                        "MinAPIVersion": min_api, "Os": "linux"}),
                       headers=api_hdr)
                continue
            if path == "/info":
                info = CONTAINERD_INFO if mode == "containerd" else OVERLAY2_INFO
                if mode == "otherroot":
                    info = dict(OVERLAY2_INFO, DockerRootDir="/srv/elsewhere/docker")
                elif mode.startswith("root="):
                    info = dict(OVERLAY2_INFO, DockerRootDir=mode.split("=", 1)[1])
                c.send(200, json.dumps(info), headers=api_hdr)
                continue
            if mode in ("pullstall", "pullerror") and method == "POST" and path == "/images/create":
                head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                sock.sendall(head.encode() + b'{"status":"Pulling from x","id":"v1"}\r\n'
                             b'{"status":"Pulling fs layer","progressDetail":{},"id":"0123abcd"}\r\n')
                if mode == "pullerror":
                    sock.sendall(b'{"errorDetail":{"message":"unknown blob"},"error":"unknown blob"}\r\n')
                    return
                while sock.recv(65536):
                    pass
                return
            if path.startswith("/images/") and path.endswith("/json"):
                if mode in ("podman404", "pullstall", "pullerror"):
                    c.send(404, json.dumps({"cause": "failed to find image",
                                            "message": "failed to find image x: image not known",
                                            "response": 404}), headers=api_hdr)
                    continue
                doc = dict(inspect or {})
                if mode == "containerd":
                    doc["GraphDriver"] = {"Name": "overlayfs", "Data": None}
                c.send(200, json.dumps(doc), headers=api_hdr)
                continue
            c.send(404, '{"message":"page not found"}', headers=api_hdr)
    except OSError:
        return
    finally:
        sock.close()


def main():
    path, mode, log = sys.argv[1], sys.argv[2], sys.argv[3]
    inspect = None
    if len(sys.argv) > 4:
        with open(sys.argv[4]) as f:
            inspect = json.load(f)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(64)
    print("ready", flush=True)
    while True:
        s, _ = srv.accept()
        threading.Thread(target=serve, args=(s, mode, log, inspect), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
