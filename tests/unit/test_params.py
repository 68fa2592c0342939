"""`Ref::` parameter substitution and the AWS_BATCH_* environment."""

from __future__ import annotations

import pytest

from batchyard.core.params import (
    ArrayChild,
    BatchEnvContext,
    MultiNode,
    batch_env,
    child_job_id,
    merged_parameters,
    node_job_id,
    reserved_env_message,
    reserved_env_violations,
    substitute,
    substitute_element,
    unresolved_refs,
)

FFMPEG = ["ffmpeg", "-i", "Ref::inputfile", "-c", "Ref::codec", "-o", "Ref::outputfile"]


@pytest.mark.parametrize(
    ("defaults", "submitted", "expected"),
    [
        pytest.param(None, None, {}, id="nothing anywhere"),
        pytest.param({"codec": "mp4"}, None, {"codec": "mp4"}, id="definition default only"),
        pytest.param(None, {"codec": "mkv"}, {"codec": "mkv"}, id="submitted only"),
        pytest.param(
            {"codec": "mp4"}, {"codec": "mkv"}, {"codec": "mkv"}, id="submission overrides the default"
        ),
        pytest.param(
            {"codec": "mp4"}, {"inputfile": "a"}, {"codec": "mp4", "inputfile": "a"}, id="both sources merge"
        ),
        pytest.param(
            {"codec": "mp4"}, {"codec": ""}, {"codec": ""}, id="empty submitted value still overrides"
        ),
    ],
)
def test_merged_parameters(
    defaults: dict[str, str] | None, submitted: dict[str, str] | None, expected: dict[str, str]
) -> None:
    assert merged_parameters(defaults, submitted) == expected


def test_merged_parameters_does_not_mutate_inputs() -> None:
    defaults = {"codec": "mp4"}
    merged_parameters(defaults, {"codec": "mkv"})
    assert defaults == {"codec": "mp4"}


def test_aws_ffmpeg_example() -> None:
    params = merged_parameters({"codec": "mp4"}, {"inputfile": "in.mov", "outputfile": "out.mp4"})
    assert substitute(FFMPEG, params) == ["ffmpeg", "-i", "in.mov", "-c", "mp4", "-o", "out.mp4"]


@pytest.mark.parametrize(
    ("element", "params", "expected"),
    [
        pytest.param("Ref::codec", {"codec": "mp4"}, "mp4", id="whole element replaced"),
        pytest.param("Ref::codec", {}, "Ref::codec", id="unknown whole element stays literal"),
        pytest.param("Ref::codec", {"codec": ""}, "", id="empty value replaces"),
        pytest.param("--in=Ref::src", {"src": "s3://b/k"}, "--in=s3://b/k", id="embedded after text"),
        pytest.param(
            "s3://Ref::bucket/Ref::key", {"bucket": "b", "key": "k"}, "s3://b/k", id="two embedded tokens"
        ),
        pytest.param("Ref::input.csv", {"input": "data"}, "data.csv", id="token ends where the name ends"),
        pytest.param("Ref::input", {"in": "X", "input": "Y"}, "Y", id="the full name wins (whole)"),
        pytest.param(
            "Ref::inputs", {"in": "X", "input": "Y"}, "Ref::inputs", id="no prefix match (embedded)"
        ),
        pytest.param(
            "Ref::inputfile",
            {"codec": "mp4", "in": "A"},
            "Ref::inputfile",
            id="a parameter whose name is a prefix does not replace (AWS leaves unknown refs)",
        ),
        pytest.param("-i=Ref::inputfile", {"in": "A"}, "-i=Ref::inputfile", id="embedded prefix is no match"),
        pytest.param("Ref::in_file", {"in": "A"}, "Ref::in_file", id="underscore belongs to the name"),
        pytest.param("Ref::in-x", {"in": "A"}, "Ref::in-x", id="hyphen belongs to the name"),
        pytest.param("Ref::in/x", {"in": "A"}, "A/x", id="slash ends the name"),
        pytest.param("Ref::i", {"in": "X"}, "Ref::i", id="partial name is not a match"),
        pytest.param("a Ref::nope b", {"x": "1"}, "a Ref::nope b", id="unknown embedded stays literal"),
        pytest.param("Ref::a", {"a": "Ref::b", "b": "2"}, "Ref::b", id="values are not expanded again"),
        pytest.param("ref::codec", {"codec": "mp4"}, "ref::codec", id="prefix is case sensitive"),
        pytest.param("Ref::Codec", {"codec": "mp4"}, "Ref::Codec", id="names are case sensitive"),
        pytest.param("plain", {"plain": "x"}, "plain", id="no prefix, no change"),
        pytest.param("Ref::", {"": "x"}, "Ref::", id="empty name never matches"),
        pytest.param("Ref::Ref::a", {"a": "1"}, "Ref::1", id="literal prefix before a real token"),
    ],
)
def test_substitute_element(element: str, params: dict[str, str], expected: str) -> None:
    assert substitute_element(element, params) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(None, None, id="unset command stays unset"),
        pytest.param([], [], id="empty list stays empty"),
        pytest.param(["sh", "-c", "echo Ref::msg"], ["sh", "-c", "echo hi"], id="args list"),
    ],
)
def test_substitute_lists(values: list[str] | None, expected: list[str] | None) -> None:
    assert substitute(values, {"msg": "hi"}) == expected


@pytest.mark.parametrize(
    ("values", "params", "expected"),
    [
        pytest.param(FFMPEG, {"codec": "mp4"}, ["Ref::inputfile", "Ref::outputfile"], id="two unresolved"),
        pytest.param(FFMPEG, {"codec": "a", "inputfile": "b", "outputfile": "c"}, [], id="all resolved"),
        pytest.param(["Ref::x", "Ref::x"], {}, ["Ref::x"], id="reported once"),
        pytest.param(["s3://Ref::b/Ref::k"], {"b": "1"}, ["Ref::k"], id="embedded unresolved"),
        pytest.param(None, {}, [], id="no command"),
    ],
)
def test_unresolved_refs(values: list[str] | None, params: dict[str, str], expected: list[str]) -> None:
    assert unresolved_refs(values, params) == expected


def a_context(**overrides: object) -> BatchEnvContext:
    base: dict[str, object] = {
        "job_id": "f980f2cf",
        "queue_name": "My-Eks-JQ1",
        "compute_environment_name": "My-Eks-CE1",
        "attempt": 1,
    }
    base.update(overrides)
    return BatchEnvContext(**base)  # type: ignore[arg-type]


COMMON = [
    ("AWS_BATCH_CE_NAME", "My-Eks-CE1"),
    ("AWS_BATCH_JOB_ATTEMPT", "1"),
    ("AWS_BATCH_JQ_NAME", "My-Eks-JQ1"),
]


@pytest.mark.parametrize(
    ("ctx", "expected"),
    [
        pytest.param(
            a_context(),
            sorted([*COMMON, ("AWS_BATCH_JOB_ID", "f980f2cf")]),
            id="single job: CE, queue, attempt, id",
        ),
        pytest.param(
            a_context(kubernetes_node_uid="a4be5c1d"),
            sorted(
                [*COMMON, ("AWS_BATCH_JOB_ID", "f980f2cf"), ("AWS_BATCH_JOB_KUBERNETES_NODE_UID", "a4be5c1d")]
            ),
            id="AWS EKS tutorial pod: node uid added",
        ),
        pytest.param(
            a_context(attempt=3),
            sorted(
                [
                    ("AWS_BATCH_CE_NAME", "My-Eks-CE1"),
                    ("AWS_BATCH_JOB_ATTEMPT", "3"),
                    ("AWS_BATCH_JQ_NAME", "My-Eks-JQ1"),
                    ("AWS_BATCH_JOB_ID", "f980f2cf"),
                ]
            ),
            id="third attempt",
        ),
        pytest.param(
            a_context(array=ArrayChild(index=7, size=10)),
            sorted(
                [
                    *COMMON,
                    ("AWS_BATCH_JOB_ID", "f980f2cf:7"),
                    ("AWS_BATCH_JOB_ARRAY_INDEX", "7"),
                    ("AWS_BATCH_JOB_ARRAY_SIZE", "10"),
                ]
            ),
            id="array child: index, size, child id",
        ),
        pytest.param(
            a_context(node=MultiNode(node_index=0, num_nodes=4, main_node_index=0, main_node_ip="10.0.0.5")),
            sorted(
                [
                    *COMMON,
                    ("AWS_BATCH_JOB_ID", "f980f2cf#0"),
                    ("AWS_BATCH_JOB_MAIN_NODE_INDEX", "0"),
                    ("AWS_BATCH_JOB_NODE_INDEX", "0"),
                    ("AWS_BATCH_JOB_NUM_NODES", "4"),
                ]
            ),
            id="MNP main node: no main-node IP",
        ),
        pytest.param(
            a_context(node=MultiNode(node_index=2, num_nodes=4, main_node_index=0, main_node_ip="10.0.0.5")),
            sorted(
                [
                    *COMMON,
                    ("AWS_BATCH_JOB_ID", "f980f2cf#2"),
                    ("AWS_BATCH_JOB_MAIN_NODE_INDEX", "0"),
                    ("AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS", "10.0.0.5"),
                    ("AWS_BATCH_JOB_NODE_INDEX", "2"),
                    ("AWS_BATCH_JOB_NUM_NODES", "4"),
                ]
            ),
            id="MNP child node: main-node IP",
        ),
    ],
)
def test_batch_env(ctx: BatchEnvContext, expected: list[tuple[str, str]]) -> None:
    env = batch_env(ctx)
    assert env == expected
    assert [name for name, _ in env] == sorted(name for name, _ in env)
    assert all(name.startswith("AWS_BATCH_") for name, _ in env)


@pytest.mark.parametrize(
    ("ctx", "message"),
    [
        pytest.param(a_context(attempt=0), "start at 1", id="attempt zero"),
        pytest.param(a_context(array=ArrayChild(index=10, size=10)), "outside", id="index past the end"),
        pytest.param(a_context(array=ArrayChild(index=-1, size=10)), "outside", id="negative index"),
        pytest.param(
            a_context(node=MultiNode(node_index=1, num_nodes=2, main_node_index=0)),
            "main node's IP",
            id="child node without main IP",
        ),
        pytest.param(
            a_context(node=MultiNode(node_index=2, num_nodes=2, main_node_index=0, main_node_ip="1.2.3.4")),
            "node indexes",
            id="node index past the end",
        ),
    ],
)
def test_batch_env_rejects_impossible_contexts(ctx: BatchEnvContext, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        batch_env(ctx)


def test_ids() -> None:
    assert child_job_id("abc", 0) == "abc:0"  # AWS: "example_job_ID:0"
    assert node_job_id("abc", 3) == "abc#3"


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        pytest.param(["PATH", "HOME"], [], id="ordinary names are fine"),
        pytest.param(["AWS_BATCH_JOB_ID"], ["AWS_BATCH_JOB_ID"], id="spoofing a Batch variable"),
        pytest.param(["AWS_BATCHX"], ["AWS_BATCHX"], id="prefix without underscore is reserved too"),
        pytest.param(["AWS_BATCH"], ["AWS_BATCH"], id="the bare prefix"),
        pytest.param(["aws_batch_job_id"], [], id="lower case is a different name"),
        pytest.param(["MY_AWS_BATCH_X"], [], id="prefix only counts at the start"),
        pytest.param(["AWS_REGION"], [], id="other AWS names are allowed"),
        pytest.param(
            ["AWS_BATCH_B", "OK", "AWS_BATCH_A", "AWS_BATCH_B"],
            ["AWS_BATCH_B", "AWS_BATCH_A"],
            id="order kept, once",
        ),
    ],
)
def test_reserved_env_violations(names: list[str], expected: list[str]) -> None:
    assert reserved_env_violations(names) == expected


def test_reserved_env_message_names_the_variables() -> None:
    message = reserved_env_message(["AWS_BATCH_JOB_ID", "AWS_BATCH_X"])
    assert "AWS_BATCH_JOB_ID, AWS_BATCH_X" in message
    assert "reserved" in message
