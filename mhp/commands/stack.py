"""``mhp stack deploy|delete|outputs``: the CloudFormation stack of deploy/template.yaml.

``deploy`` creates the stack ``mhp-<stage>`` or updates it with the artifacts (image URIs, model
data) and any other template parameter (``--param Key=Value``); parameters not given keep their
previous values on an update. It waits and prints the outputs. A failed update is rolled back by
CloudFormation to the previous template and parameters, and the command exits 1 with the failed
resources' reasons; to roll back a good update, deploy again with the previous artifacts.

``--profile aws-local`` deploys to the moto server named by ``AWS_ENDPOINT_URL`` (e.g. one
``python -m moto.server`` on 127.0.0.1), with placeholder image URIs and model location by
default and no event source mapping (moto cannot run Lambda code).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from core import aws
from core.errors import UsageError

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "template.yaml"
PLACEHOLDER_ACCOUNT = "123456789012"   # moto's account


def register(subparsers) -> None:
    p = subparsers.add_parser("stack", help="create/update/delete the CloudFormation stack (deploy/template.yaml)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    d = sub.add_parser("deploy", help="create or update the stack with the artifacts; wait; print the outputs")
    _common(d)
    d.add_argument("--ingester-image", help="ECR URI of deploy/ingester.Dockerfile's image (IngesterImageUri)")
    d.add_argument("--jobs-image", help="ECR URI of deploy/jobs.Dockerfile's image (JobsImageUri)")
    d.add_argument("--inference-image", help="ECR URI of the serving image (InferenceImageUri)")
    d.add_argument("--model-data", help="s3://<stack bucket>/models/.../model.tar.gz (ModelDataUrl)")
    d.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="any other template parameter, e.g. ChurnRiskThreshold=0.55 (repeatable)")
    d.add_argument("--template", default=str(TEMPLATE), help="the template (default: deploy/template.yaml)")
    d.set_defaults(func=cmd_deploy)
    x = sub.add_parser("delete", help="delete the stack (the state table and the bucket are retained)")
    _common(x)
    x.set_defaults(func=cmd_delete)
    o = sub.add_parser("outputs", help="print the stack's outputs")
    _common(o)
    o.set_defaults(func=cmd_outputs)


def _common(p) -> None:
    p.add_argument("--stage", default="dev", help="stage (default dev): the stack is mhp-<stage>")
    p.add_argument("--profile", default="aws", choices=["aws", "aws-local"],
                   help="aws (default) or aws-local (the moto server at AWS_ENDPOINT_URL)")


def _check_profile(args) -> None:
    if args.profile == "aws-local" and not aws.endpoint_url():
        raise UsageError("--profile aws-local: AWS_ENDPOINT_URL must point at a moto server (127.0.0.1)")


def local_parameters(stage: str) -> dict[str, str]:
    """aws-local: placeholder artifacts (moto runs no image) and no event source mapping."""
    region, ecr = aws.region(), f"{PLACEHOLDER_ACCOUNT}.dkr.ecr.{aws.region()}.amazonaws.com"
    return {"Stage": stage, "IngesterImageUri": f"{ecr}/mhp-ingester:local", "JobsImageUri": f"{ecr}/mhp-jobs:local",
            "InferenceImageUri": f"{ecr}/mhp-inference:local", "IngesterEventSource": "none",
            "ModelDataUrl": f"s3://mhp-{stage}-data-{PLACEHOLDER_ACCOUNT}-{region}/models/local/model.tar.gz"}


def parameters(args) -> dict[str, str]:
    """The template parameters from the flags (aws-local: placeholders for the artifacts)."""
    params: dict[str, str] = {"Stage": args.stage}
    if args.profile == "aws-local":
        params.update(local_parameters(args.stage))
    for flag, key in (("ingester_image", "IngesterImageUri"), ("jobs_image", "JobsImageUri"),
                      ("inference_image", "InferenceImageUri"), ("model_data", "ModelDataUrl")):
        if getattr(args, flag):
            params[key] = getattr(args, flag)
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param: expected KEY=VALUE, got {item!r}")
        params[key] = value
    return params


def cmd_deploy(args) -> int:
    from botocore.exceptions import ClientError

    from core import stack  # lazy: loaded only when this command runs (keeps `mhp --help` light)

    _check_profile(args)
    try:
        body = Path(args.template).read_text()
    except OSError as exc:
        raise UsageError(f"--template: {exc}") from None
    name = f"mhp-{args.stage}"
    print(f"deploying {name} from {args.template} ({args.profile}) ...", flush=True)
    try:
        res = stack.deploy(name, body, parameters(args))
    except stack.StackError as exc:
        print(f"mhp stack deploy: {exc}")
        return 1
    except ClientError as exc:   # a bad parameter / template: CloudFormation's message names it
        raise UsageError(str(exc)) from None
    print(f"{name}: {res.action} ({res.status}) in {res.seconds:.1f}s")
    _print_outputs(res.outputs)
    return 0


def cmd_delete(args) -> int:
    from core import stack  # lazy: loaded only when this command runs (keeps `mhp --help` light)

    _check_profile(args)
    try:
        res = stack.delete(f"mhp-{args.stage}")
    except stack.StackError as exc:
        print(f"mhp stack delete: {exc}")
        return 1
    print(f"mhp-{args.stage}: {res.action} ({res.status}); the state and serving tables and the bucket are retained")
    return 0


def cmd_outputs(args) -> int:
    from core import stack  # lazy: loaded only when this command runs (keeps `mhp --help` light)

    _check_profile(args)
    try:
        _print_outputs(stack.outputs(f"mhp-{args.stage}"))
    except stack.StackError as exc:
        raise UsageError(str(exc)) from None
    return 0


def _print_outputs(outputs: dict[str, str]) -> None:
    for k in sorted(outputs):
        print(f"  {k:<26s} {outputs[k]}")
