"""The API models load AWS Batch's own JSON shapes without losing fields, and dump them back.

Sources: the SubmitJob request syntax of the AWS Batch API Reference (S004) and the job definition
examples of the AWS Batch User Guide (S003), copied here as data. Two checks per shape:

* every key of the AWS shape is a field of the model (and of the generated CRD schema), so nothing
  a user pastes is silently pruned;
* a filled-in instance validates and `model_dump(exclude_unset=True)` gives back the same JSON.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

import pytest
from pydantic import BaseModel

from batchyard.api import BatchJobSpec, JobDefinitionSpec
from batchyard.api.batchjob import BatchJob
from batchyard.api.crdgen import crd_for
from batchyard.api.jobdefinition import JobDefinition

# --- walkers -----------------------------------------------------------------------------------


def _unwrap(tp: Any) -> Any:
    """Strip Annotated / Optional / unions with None."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            assert len(args) == 1, tp
            tp = args[0]
        else:
            return tp


def unknown_model_paths(model: type[BaseModel], value: Any, path: str = "") -> list[str]:
    """Key paths of `value` that `model` has no field for."""
    out: list[str] = []
    for key, sub in value.items():
        field = model.model_fields.get(key)
        if field is None:
            out.append(f"{path}.{key}")
            continue
        out += _unknown_in_type(field.annotation, sub, f"{path}.{key}")
    return out


def _unknown_in_type(tp: Any, value: Any, path: str) -> list[str]:
    tp = _unwrap(tp)
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return (
            unknown_model_paths(tp, value, path) if isinstance(value, dict) else [f"{path} (not an object)"]
        )
    if origin is list:
        (item,) = typing.get_args(tp)
        return [p for i, v in enumerate(value) for p in _unknown_in_type(item, v, f"{path}[{i}]")]
    return []  # scalars and string maps: any key is fine


def unknown_schema_paths(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Key paths of `value` that the CRD schema would prune."""
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return []
        if "additionalProperties" in schema:
            return [
                p for k, v in value.items() for p in unknown_schema_paths(schema["additionalProperties"], v)
            ]
        props = schema.get("properties", {})
        out = []
        for k, v in value.items():
            if k not in props:
                out.append(f"{path}.{k}")
            else:
                out += unknown_schema_paths(props[k], v, f"{path}.{k}")
        return out
    if isinstance(value, list):
        return [
            p for i, v in enumerate(value) for p in unknown_schema_paths(schema["items"], v, f"{path}[{i}]")
        ]
    return []


def spec_schema(kind: type[Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd_for(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]  # type: ignore[no-any-return]


# --- S004: SubmitJob request syntax ------------------------------------------------------------

# The request syntax of S004 ("Request Syntax"), with its placeholders replaced by valid values.
# Only the fields that are not Kubernetes identity change meaning: jobQueue and jobDefinition
# name Kubernetes objects (lower-case names), so the sample values here are object names.
SUBMIT_JOB_REQUEST: dict[str, Any] = {
    "arrayProperties": {"size": 10},
    "containerOverrides": {
        "command": ["echo", "hi"],
        "environment": [{"name": "MODE", "value": "fast"}],
        "instanceType": "m5.large",
        "memory": 512,
        "resourceRequirements": [{"type": "VCPU", "value": "2"}, {"type": "MEMORY", "value": "2048"}],
        "vcpus": 2,
    },
    "dependsOn": [{"jobId": "876da822-4198-45f2-a252-6cea32512ea8", "type": "N_TO_N"}],
    "ecsPropertiesOverride": {
        "taskProperties": [
            {
                "containers": [
                    {
                        "command": ["echo", "hello"],
                        "environment": [{"name": "A", "value": "1"}],
                        "name": "c1",
                        "resourceRequirements": [{"type": "VCPU", "value": "1"}],
                    }
                ]
            }
        ]
    },
    "eksPropertiesOverride": {
        "podProperties": {
            "containers": [
                {
                    "args": ["-c", "echo hello world"],
                    "command": ["/bin/sh"],
                    "env": [{"name": "GREETING", "value": "hello"}],
                    "image": "public.ecr.aws/amazonlinux/amazonlinux:2",
                    "name": "default",
                    "resources": {"limits": {"cpu": "1", "memory": "1024Mi"}, "requests": {"cpu": "0.5"}},
                }
            ],
            "initContainers": [
                {
                    "args": ["setup"],
                    "command": ["/bin/sh"],
                    "env": [{"name": "STEP", "value": "init"}],
                    "image": "busybox:1.36",
                    "name": "init",
                    "resources": {"limits": {"cpu": "0.25", "memory": "64Mi"}},
                }
            ],
            "metadata": {
                "annotations": {"example.com/owner": "me"},
                "labels": {"environment": "test"},
                "namespace": "batch-jobs",
            },
        }
    },
    "jobDefinition": "sleep60:2",
    "jobName": "example",
    "jobQueue": "highpriority",
    "nodeOverrides": {
        "nodePropertyOverrides": [
            {
                "containerOverrides": {
                    "command": ["mpirun"],
                    "environment": [{"name": "N", "value": "1"}],
                    "instanceType": "c5.xlarge",
                    "memory": 1024,
                    "resourceRequirements": [{"type": "GPU", "value": "1"}],
                    "vcpus": 4,
                },
                "ecsPropertiesOverride": {
                    "taskProperties": [
                        {
                            "containers": [
                                {
                                    "command": ["x"],
                                    "environment": [{"name": "B", "value": "2"}],
                                    "name": "c",
                                    "resourceRequirements": [{"type": "MEMORY", "value": "4096"}],
                                }
                            ]
                        }
                    ]
                },
                "eksPropertiesOverride": {
                    "podProperties": {
                        "containers": [
                            {
                                "args": ["a"],
                                "command": ["b"],
                                "env": [{"name": "C", "value": "3"}],
                                "image": "busybox:1.36",
                                "name": "test-eks-container-1",
                                "resources": {
                                    "limits": {"cpu": "2", "memory": "2048Mi"},
                                    "requests": {"cpu": "1"},
                                },
                            }
                        ],
                        "initContainers": [
                            {
                                "args": ["a"],
                                "command": ["b"],
                                "env": [{"name": "D", "value": "4"}],
                                "image": "busybox:1.36",
                                "name": "init",
                                "resources": {"limits": {"memory": "32Mi"}},
                            }
                        ],
                        "metadata": {
                            "annotations": {"a": "b"},
                            "labels": {"c": "d"},
                            "namespace": "mnp-jobs",
                        },
                    }
                },
                "instanceTypes": ["c5.xlarge"],
                "targetNodes": "0:",
            }
        ],
        "numNodes": 5,
    },
    "parameters": {"inputfile": "s3://bucket/in.mp4"},
    "propagateTags": True,
    "retryStrategy": {
        "attempts": 3,
        "evaluateOnExit": [
            {"action": "RETRY", "onExitCode": "1*", "onReason": "Error", "onStatusReason": "Host EC2*"},
            {"action": "exit", "onReason": "*"},
        ],
    },
    "schedulingPriorityOverride": 9999,
    "shareIdentifier": "teamA",
    "tags": {"project": "demo"},
    "timeout": {"attemptDurationSeconds": 60},
}

# S004's sample request, with its queue and definition names written as object names.
SUBMIT_JOB_SAMPLE = {"jobName": "example", "jobQueue": "highpriority", "jobDefinition": "sleep60"}


def test_every_submit_job_field_of_the_api_reference_is_a_model_field() -> None:
    assert unknown_model_paths(BatchJobSpec, SUBMIT_JOB_REQUEST) == []


def test_every_submit_job_field_of_the_api_reference_survives_crd_pruning() -> None:
    assert unknown_schema_paths(spec_schema(BatchJob), SUBMIT_JOB_REQUEST) == []


@pytest.mark.parametrize(
    "request_body",
    [SUBMIT_JOB_REQUEST, SUBMIT_JOB_SAMPLE],
    ids=["full request syntax round-trips", "the reference's sample request round-trips"],
)
def test_submit_job_request_round_trips(request_body: dict[str, Any]) -> None:
    spec = BatchJobSpec.model_validate(request_body)
    assert spec.model_dump(exclude_unset=True) == request_body
    assert json.loads(spec.model_dump_json(exclude_unset=True)) == request_body


# --- S003: job definition examples of the user guide --------------------------------------------

USER_GUIDE_JOB_DEFINITIONS: dict[str, str] = {
    # "Reference: Use environment variables"
    "fetch_and_run": """
{
    "jobDefinitionName": "fetch_and_run",
    "type": "container",
    "containerProperties": {
        "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/fetch_and_run",
        "resourceRequirements": [
            {"type": "MEMORY", "value": "2000"},
            {"type": "VCPU", "value": "2"}
        ],
        "command": ["myjob.sh", "60"],
        "jobRoleArn": "arn:aws:iam::123456789012:role/AWSBatchS3ReadOnly",
        "environment": [
            {"name": "BATCH_FILE_S3_URL", "value": "s3://amzn-s3-demo-source-bucket/myjob.sh"},
            {"name": "BATCH_FILE_TYPE", "value": "script"}
        ],
        "user": "nobody"
    }
}""",
    # "Reference: Parameter substitution"
    "ffmpeg_parameters": """
{
    "jobDefinitionName": "ffmpeg_parameters",
    "type": "container",
    "parameters": {"codec": "mp4"},
    "containerProperties": {
        "image": "my_repo/ffmpeg",
        "resourceRequirements": [
            {"type": "MEMORY", "value": "2000"},
            {"type": "VCPU", "value": "2"}
        ],
        "command": ["ffmpeg", "-i", "Ref::inputfile", "-c", "Ref::codec", "-o", "Ref::outputfile"],
        "jobRoleArn": "arn:aws:iam::123456789012:role/ECSTask-S3FullAccess",
        "user": "nobody"
    }
}""",
    # "Reference: Test GPU functionality"
    "tensorflow_mnist_deep": """
{
    "containerProperties": {
        "image": "tensorflow/tensorflow:1.8.0-devel-gpu",
        "resourceRequirements": [
            {"type": "MEMORY", "value": "32000"},
            {"type": "VCPU", "value": "8"}
        ],
        "command": ["sh", "-c", "cd /tensorflow/tensorflow/examples/tutorials/mnist; python mnist_deep.py"]
    },
    "type": "container",
    "jobDefinitionName": "tensorflow_mnist_deep"
}""",
    # "Reference: Multi-node parallel job" (a DescribeJobDefinitions entry: arn, revision, status)
    "gromacs-jobdef": """
{
    "jobDefinitionName": "gromacs-jobdef",
    "jobDefinitionArn": "arn:aws:batch:us-east-2:123456789012:job-definition/gromacs-jobdef:1",
    "revision": 6,
    "status": "ACTIVE",
    "type": "multinode",
    "parameters": {},
    "nodeProperties": {
        "numNodes": 2,
        "mainNode": 0,
        "nodeRangeProperties": [
            {
                "targetNodes": "0:1",
                "container": {
                    "image": "123456789012.dkr.ecr.us-east-2.amazonaws.com/gromacs_mpi:latest",
                    "resourceRequirements": [
                        {"type": "MEMORY", "value": "24000"},
                        {"type": "VCPU", "value": "8"}
                    ],
                    "command": [],
                    "jobRoleArn": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
                    "ulimits": [],
                    "instanceType": "p3.2xlarge"
                }
            }
        ]
    }
}""",
    # "Getting started with AWS Batch on Amazon EKS", step 5
    "MyJobOnEks_Sleep": """
{
    "jobDefinitionName": "MyJobOnEks_Sleep",
    "type": "container",
    "eksProperties": {
        "podProperties": {
            "hostNetwork": true,
            "containers": [
                {
                    "image": "public.ecr.aws/amazonlinux/amazonlinux:2",
                    "command": ["sleep", "60"],
                    "resources": {"limits": {"cpu": "1", "memory": "1024Mi"}}
                }
            ],
            "metadata": {"labels": {"environment": "test"}}
        }
    }
}""",
    # "Use Amazon EFS with AWS Batch on Amazon EKS"
    "MyJobOnEks_EFS": """
{
    "jobDefinitionName": "MyJobOnEks_EFS",
    "type": "container",
    "eksProperties": {
        "podProperties": {
            "containers": [
                {
                    "image": "public.ecr.aws/amazonlinux/amazonlinux:2",
                    "command": ["ls", "-la", "/efs"],
                    "resources": {"limits": {"cpu": "1", "memory": "1024Mi"}},
                    "volumeMounts": [{"name": "efs-volume", "mountPath": "/efs"}]
                }
            ],
            "volumes": [{"name": "efs-volume", "hostPath": {"path": "/mnt/efs"}}]
        }
    }
}""",
    # "Multi-container job definitions": AWS Batch job for Amazon EKS
    "multicontainer-eks": """
{
    "jobDefinitionName": "multicontainer-eks",
    "type": "container",
    "eksProperties": {
        "podProperties": {
            "shareProcessNamespace": true,
            "initContainers": [
                {
                    "name": "init-container",
                    "image": "public.ecr.aws/amazonlinux/amazonlinux:2",
                    "command": ["echo"],
                    "args": ["hello world"],
                    "resources": {"requests": {"cpu": "1", "memory": "512Mi"}}
                },
                {
                    "name": "init-container-2",
                    "image": "public.ecr.aws/amazonlinux/amazonlinux:2",
                    "command": ["echo", "my second init container"],
                    "resources": {"requests": {"cpu": "1", "memory": "512Mi"}}
                }
            ],
            "containers": [
                {
                    "name": "c1",
                    "image": "public.ecr.aws/amazonlinux/amazonlinux:2",
                    "command": ["echo world"],
                    "resources": {"requests": {"cpu": "1", "memory": "512Mi"}}
                },
                {
                    "name": "sleep-container",
                    "image": "public.ecr.aws/amazonlinux/amazonlinux:2",
                    "command": ["sleep", "20"],
                    "resources": {"requests": {"cpu": "1", "memory": "512Mi"}}
                }
            ]
        }
    }
}""",
    # "Multi-container job definitions": AWS Batch job for Amazon ECS on Amazon EC2
    "multicontainer-ecs-ec2": """
{
    "jobDefinitionName": "multicontainer-ecs-ec2",
    "type": "container",
    "ecsProperties": {
        "taskProperties": [
            {
                "containers": [
                    {
                        "name": "c1",
                        "essential": false,
                        "command": ["echo", "hello world"],
                        "image": "public.ecr.aws/amazonlinux/amazonlinux:latest",
                        "resourceRequirements": [
                            {"type": "VCPU", "value": "2"}, {"type": "MEMORY", "value": "4096"}
                        ]
                    },
                    {
                        "name": "c2",
                        "essential": false,
                        "command": ["echo", "hello world"],
                        "image": "public.ecr.aws/amazonlinux/amazonlinux:latest",
                        "resourceRequirements": [
                            {"type": "VCPU", "value": "2"}, {"type": "MEMORY", "value": "4096"}
                        ]
                    },
                    {
                        "name": "c3",
                        "essential": true,
                        "command": ["echo", "hello world"],
                        "image": "public.ecr.aws/amazonlinux/amazonlinux:latest",
                        "firelensConfiguration": {
                            "type": "fluentbit", "options": {"enable-ecs-log-metadata": "true"}
                        },
                        "resourceRequirements": [
                            {"type": "VCPU", "value": "6"}, {"type": "MEMORY", "value": "12288"}
                        ]
                    }
                ]
            }
        ]
    }
}""",
    # "Create an Amazon EKS MNP job definition"
    "MyEksMnpJobDefinition": """
{
    "jobDefinitionName": "MyEksMnpJobDefinition",
    "type": "multinode",
    "nodeProperties": {
        "numNodes": 2,
        "mainNode": 0,
        "nodeRangeProperties": [
            {
                "targetNodes": "0:",
                "eksProperties": {
                    "podProperties": {
                        "containers": [
                            {
                                "name": "test-eks-container-1",
                                "image": "public.ecr.aws/amazonlinux/amazonlinux:2",
                                "command": ["sleep", "60"],
                                "resources": {"limits": {"cpu": "1", "memory": "1024Mi"}},
                                "securityContext": {
                                    "runAsUser": 1000,
                                    "runAsGroup": 3000,
                                    "privileged": true,
                                    "readOnlyRootFilesystem": true,
                                    "runAsNonRoot": true
                                }
                            }
                        ],
                        "initContainers": [
                            {
                                "name": "init-ekscontainer",
                                "image": "public.ecr.aws/amazonlinux/amazonlinux:2",
                                "command": ["echo", "helloWorld"],
                                "resources": {"limits": {"cpu": "1", "memory": "1024Mi"}}
                            }
                        ],
                        "metadata": {"labels": {"environment": "test"}}
                    }
                }
            }
        ]
    }
}""",
    # "Elastic Fabric Adapter": the linuxParameters.devices shape for an MNP container
    "EFA-MNP-JobDef": """
{
    "jobDefinitionName": "EFA-MNP-JobDef",
    "type": "multinode",
    "nodeProperties": {
        "numNodes": 2,
        "mainNode": 0,
        "nodeRangeProperties": [
            {
                "targetNodes": "0:",
                "container": {
                    "image": "efa-app:latest",
                    "linuxParameters": {
                        "devices": [
                            {
                                "hostPath": "/dev/infiniband/uverbs0",
                                "containerPath": "/dev/infiniband/uverbs0",
                                "permissions": ["READ", "WRITE", "MKNOD"]
                            }
                        ]
                    }
                }
            }
        ]
    }
}""",
}

# `aws batch register-job-definition --generate-cli-skeleton` as printed in the user guide
# ("Job definition template"): every RegisterJobDefinition field at once, placeholder values.
# It can't validate as a whole (empty strings, all job types at once); its keys must all be known.
CLI_SKELETON: dict[str, Any] = {
    "type": "container",
    "parameters": {"KeyName": ""},
    "schedulingPriority": 0,
    "containerProperties": {
        "image": "",
        "vcpus": 0,
        "memory": 0,
        "command": [""],
        "jobRoleArn": "",
        "executionRoleArn": "",
        "volumes": [
            {
                "host": {"sourcePath": ""},
                "name": "",
                "efsVolumeConfiguration": {
                    "fileSystemId": "",
                    "rootDirectory": "",
                    "transitEncryption": "ENABLED",
                    "transitEncryptionPort": 0,
                    "authorizationConfig": {"accessPointId": "", "iam": "DISABLED"},
                },
            }
        ],
        "environment": [{"name": "", "value": ""}],
        "mountPoints": [{"containerPath": "", "readOnly": True, "sourceVolume": ""}],
        "readonlyRootFilesystem": True,
        "privileged": True,
        "ulimits": [{"hardLimit": 0, "name": "", "softLimit": 0}],
        "user": "",
        "instanceType": "",
        "resourceRequirements": [{"value": "", "type": "MEMORY"}],
        "linuxParameters": {
            "devices": [{"hostPath": "", "containerPath": "", "permissions": ["WRITE"]}],
            "initProcessEnabled": True,
            "sharedMemorySize": 0,
            "tmpfs": [{"containerPath": "", "size": 0, "mountOptions": [""]}],
            "maxSwap": 0,
            "swappiness": 0,
        },
        "logConfiguration": {
            "logDriver": "syslog",
            "options": {"KeyName": ""},
            "secretOptions": [{"name": "", "valueFrom": ""}],
        },
        "secrets": [{"name": "", "valueFrom": ""}],
        "networkConfiguration": {"assignPublicIp": "DISABLED"},
        "fargatePlatformConfiguration": {"platformVersion": ""},
    },
    "nodeProperties": {
        "numNodes": 0,
        "mainNode": 0,
        "nodeRangeProperties": [
            {
                "targetNodes": "",
                "container": {
                    "image": "",
                    "vcpus": 0,
                    "memory": 0,
                    "command": [""],
                    "jobRoleArn": "",
                    "executionRoleArn": "",
                    "volumes": [{"host": {"sourcePath": ""}, "name": ""}],
                    "environment": [{"name": "", "value": ""}],
                    "mountPoints": [{"containerPath": "", "readOnly": True, "sourceVolume": ""}],
                    "readonlyRootFilesystem": True,
                    "privileged": True,
                    "ulimits": [{"hardLimit": 0, "name": "", "softLimit": 0}],
                    "user": "",
                    "instanceType": "",
                    "resourceRequirements": [{"value": "", "type": "MEMORY"}],
                    "linuxParameters": {"devices": [{"hostPath": ""}], "sharedMemorySize": 0},
                    "logConfiguration": {"logDriver": "awslogs", "options": {"KeyName": ""}},
                    "secrets": [{"name": "", "valueFrom": ""}],
                    "networkConfiguration": {"assignPublicIp": "DISABLED"},
                    "fargatePlatformConfiguration": {"platformVersion": ""},
                },
            }
        ],
    },
    "retryStrategy": {
        "attempts": 0,
        "evaluateOnExit": [{"onStatusReason": "", "onReason": "", "onExitCode": "", "action": "RETRY"}],
    },
    "propagateTags": True,
    "timeout": {"attemptDurationSeconds": 0},
    "tags": {"KeyName": ""},
    "platformCapabilities": ["EC2"],
    "eksProperties": {
        "podProperties": {
            "serviceAccountName": "",
            "hostNetwork": True,
            "dnsPolicy": "",
            "containers": [
                {
                    "name": "",
                    "image": "",
                    "imagePullPolicy": "",
                    "command": [""],
                    "args": [""],
                    "env": [{"name": "", "value": ""}],
                    "resources": {"limits": {"KeyName": ""}, "requests": {"KeyName": ""}},
                    "volumeMounts": [{"name": "", "mountPath": "", "readOnly": True}],
                    "securityContext": {
                        "runAsUser": 0,
                        "runAsGroup": 0,
                        "privileged": True,
                        "readOnlyRootFilesystem": True,
                        "runAsNonRoot": True,
                    },
                }
            ],
            "volumes": [
                {
                    "name": "",
                    "hostPath": {"path": ""},
                    "emptyDir": {"medium": "", "sizeLimit": ""},
                    "secret": {"secretName": "", "optional": True},
                }
            ],
        }
    },
}


def test_every_field_of_the_register_job_definition_skeleton_is_a_model_field() -> None:
    assert unknown_model_paths(JobDefinitionSpec, CLI_SKELETON) == []


def test_every_field_of_the_register_job_definition_skeleton_survives_crd_pruning() -> None:
    assert unknown_schema_paths(spec_schema(JobDefinition), CLI_SKELETON) == []


@pytest.mark.parametrize("name", sorted(USER_GUIDE_JOB_DEFINITIONS))
def test_user_guide_job_definition_loads_and_dumps_back(name: str) -> None:
    aws = json.loads(USER_GUIDE_JOB_DEFINITIONS[name])
    got_name, spec = JobDefinitionSpec.from_aws(aws)
    assert got_name == name
    expected = {
        k: v
        for k, v in aws.items()
        if k not in ("jobDefinitionName", "jobDefinitionArn", "revision", "status")
    }
    assert spec.model_dump(exclude_unset=True) == expected
    assert unknown_schema_paths(spec_schema(JobDefinition), expected) == []
