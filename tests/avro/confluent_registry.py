"""A small in-memory schema registry speaking the Confluent Schema Registry REST API (v1), for the
end-to-end tests: no Confluent or Karapace server is available where the tests run.

It implements what streamctl's client and the confluent-kafka Python client use:
  GET  /subjects                                  GET  /subjects/{s}/versions
  GET  /subjects/{s}/versions/{v|latest}          POST /subjects/{s}/versions   (register)
  POST /subjects/{s}                              (look a schema up)
  DELETE /subjects/{s}                            GET  /schemas/ids/{id}  (and .../subjects, .../versions)
  GET/PUT /config, GET/PUT /config/{s}            POST /compatibility/subjects/{s}/versions[/{v|latest}]
  GET  /schemas/types
with the Confluent error bodies ({"error_code": 40401, "message": ...}). Ids are global: the
same schema registered under two subjects has one id. Registration checks the subject's
compatibility level (default BACKWARD) for Avro records: a reader field missing in the writer
needs a default, fields in both need the same type or an Avro promotion.

Usage: python3 confluent_registry.py PORT   (prints "listening on PORT" once it accepts requests;
       PORT 0 takes a free port, the one printed)
"""
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

LOCK = threading.Lock()
SCHEMAS = []  # index id-1: {"schema": str, "schemaType": str, "references": list}
SUBJECTS = {}  # subject -> list of {"version": int, "id": int, "deleted": bool}
CONFIG = {"": "BACKWARD"}  # "" is the global level
LEVELS = {"NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"}
PROMOTIONS = {("int", "long"), ("int", "float"), ("int", "double"), ("long", "float"), ("long", "double"),
              ("float", "double"), ("string", "bytes"), ("bytes", "string")}


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def canonical(schema_str, schema_type):
    if schema_type in ("AVRO", "JSON"):
        try:
            return json.dumps(json.loads(schema_str), sort_keys=True, separators=(",", ":"))
        except ValueError:
            raise ApiError(422, 42201, "Invalid schema: not JSON")
    return schema_str.strip()


def type_name(t):
    if isinstance(t, dict):
        return t.get("type") if t.get("type") not in ("record", "enum", "fixed") else t.get("name")
    return t


def can_read(reader, writer):
    """Whether data written with `writer` can be read with `reader` (Avro schema resolution, simplified)."""
    if isinstance(writer, list):
        return all(can_read(reader, w) for w in writer)
    if isinstance(reader, list):
        return any(can_read(r, writer) for r in reader)
    if isinstance(reader, dict) and isinstance(writer, dict):
        if reader.get("type") == "record" and writer.get("type") == "record":
            written = {f["name"]: f for f in writer.get("fields", [])}
            for f in reader.get("fields", []):
                w = written.get(f["name"])
                if w is None:
                    if "default" not in f:
                        return False
                elif not can_read(f["type"], w["type"]):
                    return False
            return True
        if reader.get("type") == "array" and writer.get("type") == "array":
            return can_read(reader["items"], writer["items"])
        if reader.get("type") == "map" and writer.get("type") == "map":
            return can_read(reader["values"], writer["values"])
        if reader.get("type") == "enum" and writer.get("type") == "enum":
            return set(writer.get("symbols", [])) <= set(reader.get("symbols", [])) or "default" in reader
    r, w = type_name(reader), type_name(writer)
    return r == w or (w, r) in PROMOTIONS


def compatible(subject, schema_str, schema_type, level=None):
    level = level or CONFIG.get(subject) or CONFIG[""]
    live = [v for v in SUBJECTS.get(subject, []) if not v["deleted"]]
    if level == "NONE" or not live or schema_type != "AVRO":
        return True
    against = live if level.endswith("_TRANSITIVE") else live[-1:]
    new = json.loads(schema_str)
    for v in against:
        old = json.loads(SCHEMAS[v["id"] - 1]["schema"])
        if level.startswith(("BACKWARD", "FULL")) and not can_read(new, old):
            return False
        if level.startswith(("FORWARD", "FULL")) and not can_read(old, new):
            return False
    return True


def live_versions(subject):
    versions = [v for v in SUBJECTS.get(subject, []) if not v["deleted"]]
    if not versions:
        raise ApiError(404, 40401, f"Subject '{subject}' not found.")
    return versions


def find_version(subject, version):
    versions = live_versions(subject)
    if version in ("latest", "-1"):
        return versions[-1]
    for v in versions:
        if str(v["version"]) == version:
            return v
    raise ApiError(404, 40402, f"Version {version} not found.")


def record(subject, v):
    s = SCHEMAS[v["id"] - 1]
    out = {"subject": subject, "version": v["version"], "id": v["id"], "schema": s["schema"]}
    if s["schemaType"] != "AVRO":
        out["schemaType"] = s["schemaType"]
    if s["references"]:
        out["references"] = s["references"]
    return out


def schema_of(body):
    if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
        raise ApiError(422, 42201, "Invalid schema: the body needs a \"schema\" string")
    schema_type = body.get("schemaType") or "AVRO"
    return body["schema"], schema_type, body.get("references") or [], canonical(body["schema"], schema_type)


def id_of(canon, schema_type):
    for i, s in enumerate(SCHEMAS):
        if s["canonical"] == canon and s["schemaType"] == schema_type:
            return i + 1
    return None


def handle(method, path, query, body):
    parts = [unquote(p) for p in path.strip("/").split("/") if p]
    match (method, parts):
        case ("GET", ["subjects"]):
            return sorted(s for s in SUBJECTS if any(not v["deleted"] for v in SUBJECTS[s]))
        case ("GET", ["schemas", "types"]):
            return ["AVRO", "JSON"]
        case ("GET", ["subjects", s, "versions"]):
            return [v["version"] for v in live_versions(s)]
        case ("GET", ["subjects", s, "versions", v]):
            return record(s, find_version(s, v))
        case ("GET", ["subjects", s, "versions", v, "schema"]):
            return json.loads(SCHEMAS[find_version(s, v)["id"] - 1]["schema"])
        case ("POST", ["subjects", s, "versions"]):
            text, schema_type, refs, canon = schema_of(body)
            sid = id_of(canon, schema_type)
            for v in SUBJECTS.get(s, []):
                if v["id"] == sid and not v["deleted"]:
                    return {"id": sid}
            if schema_type == "AVRO" and not compatible(s, text, schema_type):
                level = CONFIG.get(s) or CONFIG[""]
                raise ApiError(409, 409, f"Schema being registered is incompatible with an earlier schema "
                                         f"for subject \"{s}\" (compatibility {level})")
            if sid is None:
                SCHEMAS.append({"schema": text, "schemaType": schema_type, "references": refs, "canonical": canon})
                sid = len(SCHEMAS)
            versions = SUBJECTS.setdefault(s, [])
            versions.append({"version": max((v["version"] for v in versions), default=0) + 1, "id": sid,
                             "deleted": False})
            return {"id": sid}
        case ("POST", ["subjects", s]):
            _, schema_type, _, canon = schema_of(body)
            sid = id_of(canon, schema_type)
            for v in live_versions(s):
                if v["id"] == sid:
                    return record(s, v)
            raise ApiError(404, 40403, "Schema not found")
        case ("DELETE", ["subjects", s]):
            versions = live_versions(s)
            for v in versions:
                v["deleted"] = True
            if query.get("permanent") == "true":
                SUBJECTS.pop(s, None)
            return [v["version"] for v in versions]
        case ("GET", ["schemas", "ids", i]):
            if not i.isdigit() or not 1 <= int(i) <= len(SCHEMAS):
                raise ApiError(404, 40403, f"Schema {i} not found")
            s = SCHEMAS[int(i) - 1]
            out = {"schema": s["schema"]}
            if s["schemaType"] != "AVRO":
                out["schemaType"] = s["schemaType"]
            if s["references"]:
                out["references"] = s["references"]
            return out
        case ("GET", ["schemas", "ids", i, what]) if what in ("subjects", "versions"):
            found = [(s, v["version"]) for s, vs in SUBJECTS.items() for v in vs
                     if str(v["id"]) == i and not v["deleted"]]
            if not found:
                raise ApiError(404, 40403, f"Schema {i} not found")
            return [s for s, _ in found] if what == "subjects" else [{"subject": s, "version": v} for s, v in found]
        case ("GET", ["config"]):
            return {"compatibilityLevel": CONFIG[""]}
        case ("GET", ["config", s]):
            if s in CONFIG:
                return {"compatibilityLevel": CONFIG[s]}
            if query.get("defaultToGlobal") == "true":
                return {"compatibilityLevel": CONFIG[""]}
            raise ApiError(404, 40408, f"Subject '{s}' does not have subject-level compatibility configured")
        case ("PUT", ["config"] | ["config", _]):
            level = (body or {}).get("compatibility") or (body or {}).get("compatibilityLevel")
            if level not in LEVELS:
                raise ApiError(422, 42203, f"Invalid compatibility level {level!r}")
            CONFIG[parts[1] if len(parts) == 2 else ""] = level
            return {"compatibility": level}
        case ("POST", ["compatibility", "subjects", s, "versions", *rest]):
            text, schema_type, _, _ = schema_of(body)
            if rest:
                find_version(s, rest[0])
            return {"is_compatible": compatible(s, text, schema_type)}
    raise ApiError(404, 404, f"HTTP 404 Not Found: {method} {path}")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def respond(self, method):
        url = urlparse(self.path)
        query = dict(re.findall(r"([^&=]+)=([^&]*)", url.query))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
            with LOCK:
                status, reply = 200, handle(method, url.path, query, body)
        except ApiError as e:
            status, reply = e.status, {"error_code": e.code, "message": e.message}
        except ValueError as e:
            status, reply = 400, {"error_code": 400, "message": f"malformed request: {e}"}
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.respond("GET")

    def do_POST(self):
        self.respond("POST")

    def do_PUT(self):
        self.respond("PUT")

    def do_DELETE(self):
        self.respond("DELETE")


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()
