#!/usr/bin/env python3
"""A small in-memory schema registry speaking the Confluent REST API (v1) over HTTPS, for
tests/registry_tls.rs. It serves what `streamctl plan` and `apply` use:

  GET /subjects, GET /subjects/{s}/versions, GET /subjects/{s}/versions/{v},
  POST /subjects/{s}/versions (register), POST /subjects/{s} (look a schema up),
  GET/PUT /config/{s}, DELETE /subjects/{s}, GET /schemas/ids/{id}

Usage: registry.py --cert server.pem --key server.key --state state.json
                   [--client-ca ca.pem] [--user-info USER:PASSWORD]

It listens on 127.0.0.1 on a free port and prints the port on the first line of stdout. With
--client-ca, clients must present a certificate signed by that CA (mutual TLS). With --user-info,
requests without that basic-auth header are refused with 401. After every change the subjects are
written to the state file (JSON), which the test reads.
"""

import argparse
import base64
import json
import os
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class Store:
    def __init__(self, state_path):
        self.lock = threading.Lock()
        self.state_path = state_path
        self.subjects = {}  # subject -> [ {version, id, schemaType, schema} ]
        self.config = {}  # subject -> level
        self.ids = {}  # (schemaType, canonical schema) -> id

    def save(self):
        with open(self.state_path + ".tmp", "w") as f:
            json.dump({"subjects": self.subjects, "config": self.config}, f, indent=1)
        os.replace(self.state_path + ".tmp", self.state_path)


def canonical(schema):
    try:
        return json.dumps(json.loads(schema), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return schema.strip()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store = None
    user_info = None

    def log_message(self, fmt, *args):
        sys.stderr.write("registry: " + (fmt % args) + "\n")

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, code, message):
        self.reply(status, {"error_code": code, "message": message})

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def authorized(self):
        if self.user_info is None:
            return True
        expected = "Basic " + base64.b64encode(self.user_info.encode()).decode()
        if self.headers.get("Authorization") == expected:
            return True
        self.error(401, 401, "Unauthorized")
        return False

    def route(self, method):
        if not self.authorized():
            return
        parts = [unquote(p) for p in self.path.split("?")[0].strip("/").split("/")]
        store = self.store
        with store.lock:
            if parts == ["subjects"] and method == "GET":
                return self.reply(200, sorted(s for s, v in store.subjects.items() if v))
            if parts[:1] == ["schemas"] and parts[1:2] == ["ids"] and len(parts) == 3 and method == "GET":
                for versions in store.subjects.values():
                    for v in versions:
                        if str(v["id"]) == parts[2]:
                            return self.reply(200, self.schema_body(v))
                return self.error(404, 40403, "Schema %s not found" % parts[2])
            if parts[:1] == ["config"] and len(parts) == 2:
                subject = parts[1]
                if method == "GET":
                    if subject not in store.config:
                        return self.error(404, 40408, "Subject '%s' does not have subject-level compatibility configured" % subject)
                    return self.reply(200, {"compatibilityLevel": store.config[subject]})
                if method == "PUT":
                    level = self.body()["compatibility"]
                    store.config[subject] = level
                    store.save()
                    return self.reply(200, {"compatibility": level})
            if parts[:1] == ["subjects"] and len(parts) >= 2:
                subject = parts[1]
                versions = store.subjects.get(subject, [])
                if len(parts) == 2 and method == "DELETE":
                    if not versions:
                        return self.error(404, 40401, "Subject '%s' not found." % subject)
                    store.subjects[subject] = []
                    store.save()
                    return self.reply(200, [v["version"] for v in versions])
                if len(parts) == 2 and method == "POST":
                    found = self.find(versions, self.body())
                    if found is None:
                        if not versions:
                            return self.error(404, 40401, "Subject '%s' not found." % subject)
                        return self.error(404, 40403, "Schema not found")
                    return self.reply(200, dict(self.schema_body(found), subject=subject, id=found["id"], version=found["version"]))
                if parts[2:3] == ["versions"] and len(parts) == 3:
                    if method == "GET":
                        if not versions:
                            return self.error(404, 40401, "Subject '%s' not found." % subject)
                        return self.reply(200, [v["version"] for v in versions])
                    if method == "POST":
                        body = self.body()
                        found = self.find(versions, body)
                        if found is not None:
                            return self.reply(200, {"id": found["id"]})
                        schema_type = body.get("schemaType", "AVRO")
                        key = (schema_type, canonical(body["schema"]))
                        schema_id = store.ids.setdefault(key, len(store.ids) + 1)
                        version = versions[-1]["version"] + 1 if versions else 1
                        versions.append({"version": version, "id": schema_id, "schemaType": schema_type, "schema": body["schema"]})
                        store.subjects[subject] = versions
                        store.save()
                        return self.reply(200, {"id": schema_id})
                if parts[2:3] == ["versions"] and len(parts) == 4 and method == "GET":
                    wanted = versions[-1:] if parts[3] == "latest" else [v for v in versions if str(v["version"]) == parts[3]]
                    if not wanted:
                        return self.error(404, 40402, "Version %s not found." % parts[3])
                    v = wanted[0]
                    return self.reply(200, dict(self.schema_body(v), subject=subject, id=v["id"], version=v["version"]))
        self.error(404, 404, "HTTP 404 Not Found: %s %s" % (method, self.path))

    @staticmethod
    def find(versions, body):
        schema_type = body.get("schemaType", "AVRO")
        for v in versions:
            if v["schemaType"] == schema_type and canonical(v["schema"]) == canonical(body["schema"]):
                return v
        return None

    @staticmethod
    def schema_body(v):
        body = {"schema": v["schema"]}
        if v["schemaType"] != "AVRO":
            body["schemaType"] = v["schemaType"]
        return body

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PUT(self):
        self.route("PUT")

    def do_DELETE(self):
        self.route("DELETE")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--client-ca")
    parser.add_argument("--user-info")
    args = parser.parse_args()

    Handler.store = Store(args.state)
    Handler.user_info = args.user_info
    Handler.store.save()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(args.client_ca)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
