"""Requests the daemon cannot decode are InvalidArgument with the reason, as any bad request:
not OUT_OF_RANGE (too large) or INTERNAL (undecodable), which would blame the daemon."""

from __future__ import annotations

import grpc
import pytest

from tend_client import process_pb2 as pb


def raw_call(daemon, method: str, body: bytes):
    with grpc.insecure_channel(
        f"unix://{daemon.sock}", options=[("grpc.max_send_message_length", 64 << 20)]
    ) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        return call(body, timeout=10)


@pytest.mark.parametrize(
    "body, reason",
    [
        # Field 1 (spec) with the varint wire type instead of a length-delimited message.
        (b"\x08\x01", "failed to decode"),
        # A length-delimited field that claims more bytes than there are.
        (b"\x0a\x10\x0a\x02", "failed to decode"),
        # spec.argv[0] with invalid UTF-8.
        (b"\x0a\x04\x0a\x02\xff\xfe", "failed to decode"),
    ],
)
def test_an_undecodable_request_is_invalid_argument(daemon, body, reason):
    with pytest.raises(grpc.RpcError) as e:
        raw_call(daemon, "/tend.v1.ProcessService/Start", body)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert e.value.details().startswith("request: "), e.value.details()
    assert reason in e.value.details()


def test_a_request_over_the_decoding_limit_is_invalid_argument(daemon):
    big = pb.StartRequest(spec=pb.ProcessSpec(argv=["true"], env={"BIG": "x" * (5 << 20)}))
    with pytest.raises(grpc.RpcError) as e:
        raw_call(daemon, "/tend.v1.ProcessService/Start", big.SerializeToString())
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert "too large" in e.value.details()
    # Below the decoding limit, over the documented one: the field is named.
    mid = pb.StartRequest(spec=pb.ProcessSpec(argv=["true"], env={"BIG": "x" * (2 << 20)}))
    with pytest.raises(grpc.RpcError) as e:
        raw_call(daemon, "/tend.v1.ProcessService/Start", mid.SerializeToString())
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith("spec"), e.value.details()
