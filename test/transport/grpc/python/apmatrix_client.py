#!/usr/bin/env python3
"""A gRPC client no one on the apmatrix team wrote: Debian's python3-grpcio and python3-protobuf,
with message types taken from the server's reflection service (cross-checked against Debian's own
protoc from python3-grpc-tools compiling proto/apmatrix/v1/*.proto). Prints one JSON document.

usage: apmatrix_client.py TARGET PROTO_ROOT REFLECTION_PROTO UUID SINCE_SEQ WATCH_COUNT
"""
import json
import os
import re
import sys
import tempfile

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_tools import protoc
import grpc_tools


def message_class(pool, name):
    desc = pool.FindMessageTypeByName(name)
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def compile_descriptor_set(include_dirs, files):
    out = os.path.join(tempfile.mkdtemp(), "set.pb")
    args = ["protoc", "--include_imports", "--descriptor_set_out=" + out]
    for d in include_dirs:
        args += ["-I", d]
    if protoc.main(args + files) != 0:
        raise SystemExit("protoc failed on " + " ".join(files))
    fds = descriptor_pb2.FileDescriptorSet()
    with open(out, "rb") as f:
        fds.ParseFromString(f.read())
    return fds


def pool_of(files):
    pool = descriptor_pool.DescriptorPool()
    pending = list(files)
    # Add in dependency order.
    added = set()
    while pending:
        progress = False
        for fd in list(pending):
            if all(d in added for d in fd.dependency):
                pool.Add(fd)
                added.add(fd.name)
                pending.remove(fd)
                progress = True
        if not progress:
            raise SystemExit("unresolvable descriptor dependencies: " + ", ".join(fd.name for fd in pending))
    return pool


def main():
    target, proto_root, reflection_proto, uuid, since_seq, watch_count = sys.argv[1:7]
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    out = {"grpcio": grpc.__version__}

    # 1. Debian's protoc compiles our .proto files.
    api_files = sorted("apmatrix/v1/" + f for f in os.listdir(os.path.join(proto_root, "apmatrix/v1")) if f.endswith(".proto"))
    local = compile_descriptor_set([proto_root, well_known], api_files)
    local_pool = pool_of(local.file)

    # 2. Reflection: list services, then fetch the API descriptors from the server.
    refl = compile_descriptor_set([os.path.dirname(reflection_proto), well_known], [os.path.basename(reflection_proto)])
    refl_pool = pool_of(refl.file)
    Req = message_class(refl_pool, "grpc.reflection.v1.ServerReflectionRequest")
    Res = message_class(refl_pool, "grpc.reflection.v1.ServerReflectionResponse")
    channel = grpc.insecure_channel(target)
    info = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=Res.FromString,
    )
    replies = list(info(iter([Req(list_services=""), Req(file_containing_symbol="apmatrix.v1.MdevService"), Req(file_containing_symbol="apmatrix.v1.EventService"), Req(file_containing_symbol="apmatrix.v1.HostService")]), timeout=10))
    out["services"] = sorted(s.name for s in replies[0].list_services_response.service)
    files = {}
    for r in replies[1:]:
        for blob in r.file_descriptor_response.file_descriptor_proto:
            fd = descriptor_pb2.FileDescriptorProto()
            fd.ParseFromString(blob)
            files[fd.name] = fd
    if os.environ.get("APMATRIX_DEBUG"):
        for fd in files.values():
            print("FILE", fd.name, list(fd.dependency), [m.name for m in fd.message_type][:5], file=sys.stderr)
    pool = pool_of(list(files.values()))

    # The server's descriptors and Debian's protoc agree on the messages callers depend on.
    def shape(p, name):
        return sorted((f.name, f.number, f.type, f.label) for f in p.FindMessageTypeByName(name).fields)
    out["descriptors_agree"] = all(
        shape(pool, n) == shape(local_pool, n)
        for n in ["apmatrix.v1.CreateMdevRequest", "apmatrix.v1.MdevSpec", "apmatrix.v1.Mdev", "apmatrix.v1.WatchRequest", "apmatrix.v1.Event", "apmatrix.v1.Violation"]
    )

    def unary(service, method, req_name, res_name, **fields):
        Req_ = message_class(pool, "apmatrix.v1." + req_name)
        Res_ = message_class(pool, "apmatrix.v1." + res_name)
        call = channel.unary_unary("/apmatrix.v1.%s/%s" % (service, method), request_serializer=lambda m: m.SerializeToString(), response_deserializer=Res_.FromString)
        # The caller's id is its correlation id; the server answers with a request id of its own.
        res, c = call.with_call(Req_(**fields), timeout=10, metadata=(("x-request-id", "py-" + method),))
        md = {m.key: m.value for m in c.initial_metadata()}
        out.setdefault("request_ids", {})[method] = {"request_id": md.get("x-request-id"), "correlation_id": md.get("x-correlation-id")}
        return res

    out["hosts"] = [h.name for h in unary("HostService", "ListHosts", "ListHostsRequest", "ListHostsResponse").hosts]

    Spec = message_class(pool, "apmatrix.v1.MdevSpec")
    created = unary("MdevService", "CreateMdev", "CreateMdevRequest", "CreateMdevResponse", host="local", uuid=uuid, spec=Spec(adapters=[5], domains=[4], control_domains=[4]))
    out["create"] = {"created": created.created, "uuid": created.mdev.metadata.uuid, "generation": created.mdev.metadata.generation, "state": created.mdev.spec.state}

    got = unary("MdevService", "GetMdev", "GetMdevRequest", "Mdev", host="local", uuid=uuid.upper())
    out["get"] = {"uuid": got.metadata.uuid, "adapters": list(got.spec.adapters), "domains": list(got.spec.domains), "control_domains": list(got.spec.control_domains), "resource_version": got.metadata.resource_version}

    # The standard rich status (grpc-status-details-bin), decoded with classes Debian's protoc builds from
    # the vendored google/rpc protos: nothing of the server's encoder is shared.
    # Debian's protoc (3.5) predates proto3 `optional` (one field of error_details.proto, future_quota_value):
    # compile a copy without the label, which changes nothing on the wire.
    rpc_root = tempfile.mkdtemp()
    os.makedirs(os.path.join(rpc_root, "google/rpc"))
    for name in ["status.proto", "error_details.proto"]:
        with open(os.path.join(proto_root, "google/rpc", name)) as f:
            text = re.sub(r"^(\s*)optional ", r"\1", f.read(), flags=re.M)
        with open(os.path.join(rpc_root, "google/rpc", name), "w") as f:
            f.write(text)
    rpc = compile_descriptor_set([rpc_root, well_known], ["google/rpc/status.proto", "google/rpc/error_details.proto"])
    rpc_pool = pool_of(rpc.file)
    RpcStatus = message_class(rpc_pool, "google.rpc.Status")
    rpc_types = {n: message_class(rpc_pool, n) for n in ["google.rpc.ErrorInfo", "google.rpc.BadRequest", "google.rpc.PreconditionFailure"]}

    def rich_status(e):
        md = {m.key: m.value for m in e.trailing_metadata()}
        st = RpcStatus.FromString(md["grpc-status-details-bin"])
        details = {}
        for d in st.details:
            name = d.type_url.split("/", 1)[1]
            details[name] = rpc_types[name].FromString(d.value)
        info = details["google.rpc.ErrorInfo"]
        out = {"code_matches": st.code == e.code().value[0], "message_matches": st.message == e.details(), "reason": info.reason, "domain": info.domain, "metadata": dict(info.metadata)}
        if "google.rpc.PreconditionFailure" in details:
            out["preconditions"] = sorted(v.type + " " + v.subject for v in details["google.rpc.PreconditionFailure"].violations)
        if "google.rpc.BadRequest" in details:
            out["field_violations"] = sorted(v.field + " " + v.reason for v in details["google.rpc.BadRequest"].field_violations)
        return out

    # An admission error: status, code trailer, violations JSON and violations-bin decoded here.
    try:
        unary("MdevService", "CreateMdev", "CreateMdevRequest", "CreateMdevResponse", host="local", uuid="99999999-9999-4999-8999-999999999999", spec=Spec(adapters=[5, 7], domains=[1, 4]))
        out["error"] = None
    except grpc.RpcError as e:
        md = {m.key: m.value for m in e.trailing_metadata()}
        Violations = message_class(pool, "apmatrix.v1.Violations")
        decoded = Violations.FromString(md["violations-bin"])
        out["error"] = {
            "status": e.code().name,
            "code": md.get("code"),
            "request_id": md.get("x-request-id"),
            "correlation_id": md.get("x-correlation-id"),
            "violations": sorted(v["rule"] + " " + v.get("apqn", "") for v in json.loads(md["violations"])),
            "violations_bin": sorted(v.rule + " " + v.apqn for v in decoded.violations),
            "rich": rich_status(e),
        }

    try:
        unary("HostService", "GetHost", "GetHostRequest", "Host", host="")
    except grpc.RpcError as e:
        out["bad_input"] = e.code().name
        out["bad_input_rich"] = rich_status(e)

    # Bytes that are no message at all: the caller's mistake, not the server's.
    raw = channel.unary_unary("/apmatrix.v1.HostService/SetMasks", request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        raw(b"\xff\xff\xff\xff", timeout=10)
        out["garbage"] = None
    except grpc.RpcError as e:
        out["garbage"] = {"status": e.code().name, "reason": rich_status(e)["reason"]}

    masks = unary("HostService", "SetMasks", "SetMasksRequest", "SetMasksResponse", host="local", apmask="-7")
    out["masks_apmask_has_7"] = 7 in list(masks.masks.spec.apmask_ids)

    # A Watch stream: read WATCH_COUNT events, then cancel.
    WatchRequest = message_class(pool, "apmatrix.v1.WatchRequest")
    Event = message_class(pool, "apmatrix.v1.Event")
    watch = channel.unary_stream("/apmatrix.v1.EventService/Watch", request_serializer=lambda m: m.SerializeToString(), response_deserializer=Event.FromString)
    stream = watch(WatchRequest(host="local", since_seq=int(since_seq)), timeout=20)
    events = []
    for ev in stream:
        events.append({"seq": ev.seq, "type": ev.type, "name": ev.name, "request_id": ev.request_id, "kind": ev.kind})
        if len(events) >= int(watch_count):
            stream.cancel()
            break
    out["events"] = events
    channel.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
