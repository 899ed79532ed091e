"""Stand-in for Jaeger all-in-one, for scripts/compose-run.sh only (jaeger.Dockerfile).

OTLP/gRPC on 0.0.0.0:4317 (opentelemetry.proto.collector.trace.v1.TraceService/Export) keeps every span
in memory; HTTP on 0.0.0.0:16686 answers the part of Jaeger's query API that the run reads, in Jaeger's
shapes:

    GET /api/services                    {"data": [service name, ...]}
    GET /api/traces?service=NAME[&limit] {"data": [trace, ...]}: traces with a span of that service
    GET /api/traces/{trace id}           {"data": [trace]}
    GET /                                a plain HTML list of the traces and their spans

A trace is {"traceID", "spans": [{"traceID", "spanID", "operationName", "references", "startTime",
"duration", "tags", "processID"}], "processes": {"p1": {"serviceName", "tags"}}}.
The request is read with a small protobuf wire-format reader (only the fields above), so no generated
code is needed. Not Jaeger: no UI, no search by tags or time, no storage beyond memory.
"""

import html
import json
import signal
import struct
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import grpc

OTLP_PORT = 4317
HTTP_PORT = 16686

TRACES = {}  # trace id (hex) -> list of (service name, span dict)
LOCK = threading.Lock()


def varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def fields(buf):
    """(field number, value) pairs of one protobuf message; value is int or bytes."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(buf, i)
        elif wire == 1:
            value, i = struct.unpack_from("<Q", buf, i)[0], i + 8
        elif wire == 2:
            length, i = varint(buf, i)
            value, i = bytes(buf[i:i + length]), i + length
        elif wire == 5:
            value, i = struct.unpack_from("<I", buf, i)[0], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        yield number, value


def attribute(kv):
    """KeyValue -> (key, value as text): AnyValue string (1), bool (2), int (3), double (4)."""
    key, text = "", ""
    for n, v in fields(kv):
        if n == 1:
            key = v.decode("utf-8", "replace")
        elif n == 2:
            for an, av in fields(v):
                if an == 1:
                    text = av.decode("utf-8", "replace")
                elif an == 2:
                    text = "true" if av else "false"
                elif an == 3:
                    text = str(av - (1 << 64) if av >= 1 << 63 else av)
                elif an == 4:
                    text = str(struct.unpack("<d", struct.pack("<Q", av))[0])
    return key, text


def span_of(buf):
    span = {"references": [], "tags": [], "startTime": 0, "duration": 0}
    start = end = 0
    for n, v in fields(buf):
        if n == 1:
            span["traceID"] = v.hex()
        elif n == 2:
            span["spanID"] = v.hex()
        elif n == 4 and v:
            span["references"].append({"refType": "CHILD_OF", "spanID": v.hex()})
        elif n == 5:
            span["operationName"] = v.decode("utf-8", "replace")
        elif n == 7:
            start = v
        elif n == 8:
            end = v
        elif n == 9:
            key, text = attribute(v)
            span["tags"].append({"key": key, "type": "string", "value": text})
    span["startTime"] = start // 1000
    span["duration"] = max(end - start, 0) // 1000
    for ref in span["references"]:
        ref["traceID"] = span.get("traceID", "")
    return span


def export(request, _context):
    received = 0
    for n, resource_spans in fields(request):
        if n != 1:
            continue
        service, scopes = "unknown_service", []
        for rn, rv in fields(resource_spans):
            if rn == 1:
                for an, av in fields(rv):
                    if an == 1:
                        key, text = attribute(av)
                        if key == "service.name":
                            service = text
            elif rn == 2:
                scopes.append(rv)
        for scope in scopes:
            for sn, sv in fields(scope):
                if sn == 2:
                    span = span_of(sv)
                    with LOCK:
                        TRACES.setdefault(span.get("traceID", ""), []).append((service, span))
                    received += 1
    print(f"received {received} span(s)", flush=True)
    return b""  # an empty ExportTraceServiceResponse


def jaeger_trace(trace_id, entries):
    processes, spans = {}, []
    for service, span in entries:
        pid = next((p for p, s in processes.items() if s["serviceName"] == service), None)
        if pid is None:
            pid = f"p{len(processes) + 1}"
            processes[pid] = {"serviceName": service, "tags": []}
        spans.append(dict(span, processID=pid))
    spans.sort(key=lambda s: s["startTime"])
    return {"traceID": trace_id, "spans": spans, "processes": processes, "warnings": None}


class Query(BaseHTTPRequestHandler):
    def send(self, status, body, content_type="application/json"):
        payload = body.encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def answer(self, data, status=200):
        self.send(status, json.dumps({"data": data, "total": len(data) if isinstance(data, list) else 0,
                                      "limit": 0, "offset": 0, "errors": None}))

    def do_GET(self):
        url = urlparse(self.path)
        with LOCK:
            traces = {t: list(e) for t, e in TRACES.items()}
        if url.path == "/api/services":
            self.answer(sorted({s for e in traces.values() for s, _ in e}))
        elif url.path == "/api/traces":
            query = parse_qs(url.query)
            service = query.get("service", [""])[0]
            limit = int(query.get("limit", ["20"])[0])
            found = [jaeger_trace(t, e) for t, e in traces.items() if any(s == service for s, _ in e)]
            found.sort(key=lambda t: t["spans"][0]["startTime"], reverse=True)
            self.answer(found[:limit])
        elif url.path.startswith("/api/traces/"):
            trace_id = url.path.rsplit("/", 1)[1]
            if trace_id in traces:
                self.answer([jaeger_trace(trace_id, traces[trace_id])])
            else:
                self.send(404, json.dumps({"data": None, "errors": [{"code": 404, "msg": "trace not found"}]}))
        elif url.path == "/":
            rows = []
            for t, e in traces.items():
                items = "".join(
                    f"<li>{html.escape(s)}: {html.escape(sp.get('operationName', ''))}</li>" for s, sp in e)
                rows.append(f"<h2>trace {html.escape(t)}</h2><ul>{items}</ul>")
            self.send(200, "<!doctype html><title>Traces (Jaeger stand-in)</title>"
                           f"<h1>{len(traces)} trace(s)</h1>" + "".join(rows), "text/html; charset=utf-8")
        else:
            self.send(404, json.dumps({"data": None, "errors": [{"code": 404, "msg": "not found"}]}))

    def log_message(self, fmt, *args):
        pass


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(export)}),))
    server.add_insecure_port(f"0.0.0.0:{OTLP_PORT}")
    server.start()
    print(f"Jaeger stand-in: OTLP/gRPC on :{OTLP_PORT}, query API on :{HTTP_PORT}", flush=True)
    try:
        ThreadingHTTPServer(("0.0.0.0", HTTP_PORT), Query).serve_forever()
    finally:
        server.stop(0)


if __name__ == "__main__":
    main()
