"""CloudFormation stacks: create or update one from a template, wait, report; delete one.

``deploy(name, template_body, parameters)`` creates the stack, or updates it when it exists
(parameters not given keep their previous values), waits until CloudFormation settles and
returns the stack's outputs. A failed create or update raises :class:`StackError` with the
failed resources' reasons; CloudFormation has by then rolled an update back to the previous
template and parameters (``UPDATE_ROLLBACK_COMPLETE``), and deleted a failed new stack's
resources (``ROLLBACK_COMPLETE``; delete that stack before creating it again). An update that
changes nothing is not an error.

Used by ``mhp stack`` and by ``mhp demo --profile aws-local`` (the stack on the moto server).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping

from core import aws

#: statuses in which CloudFormation is done with the stack
_DONE_OK = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "DELETE_COMPLETE", "IMPORT_COMPLETE"}
_DONE_FAILED = {"CREATE_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "UPDATE_ROLLBACK_COMPLETE",
                "UPDATE_ROLLBACK_FAILED", "DELETE_FAILED", "UPDATE_FAILED"}


class StackError(RuntimeError):
    pass


@dataclass
class StackResult:
    name: str
    action: str                      # "created", "updated", "unchanged"
    status: str
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def _stack(cf, name: str) -> dict | None:
    try:
        return cf.describe_stacks(StackName=name)["Stacks"][0]
    except cf.exceptions.ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise


def _failures(cf, name: str, since: float) -> list[str]:
    out = []
    for e in cf.describe_stack_events(StackName=name).get("StackEvents", []):
        if e["Timestamp"].timestamp() >= since - 1 and e.get("ResourceStatus", "").endswith("_FAILED"):
            out.append(f"{e['LogicalResourceId']} ({e['ResourceType']}): {e.get('ResourceStatusReason', '')}")
    return out


def wait(cf, name: str, since: float, timeout: float = 3600.0, poll: float = 2.0) -> dict:
    """Poll until the stack leaves its *_IN_PROGRESS status; raise StackError on a failed one."""
    deadline = time.monotonic() + timeout
    while True:
        st = _stack(cf, name)
        if st is None:
            return {"StackName": name, "StackStatus": "DELETE_COMPLETE"}
        status = st["StackStatus"]
        if status in _DONE_OK:
            return st
        if status in _DONE_FAILED:
            reasons = _failures(cf, name, since) or [st.get("StackStatusReason", "")]
            raise StackError(f"stack {name}: {status}; " + "; ".join(r for r in reasons if r))
        if time.monotonic() > deadline:
            raise StackError(f"stack {name}: still {status} after {timeout:.0f}s")
        time.sleep(poll)


def deploy(name: str, template_body: str, parameters: Mapping[str, str], *, cf=None,
           capabilities=("CAPABILITY_NAMED_IAM",), timeout: float = 3600.0, poll: float = 2.0) -> StackResult:
    cf = cf or aws.boto3_client("cloudformation")
    t0, since = time.monotonic(), time.time()
    current = _stack(cf, name)
    if current is not None and current["StackStatus"] == "ROLLBACK_COMPLETE":
        raise StackError(f"stack {name}: ROLLBACK_COMPLETE (its creation failed): delete it first "
                         f"(mhp stack delete) and deploy again")
    given = [{"ParameterKey": k, "ParameterValue": str(v)} for k, v in parameters.items()]
    if current is None:
        cf.create_stack(StackName=name, TemplateBody=template_body, Parameters=given,
                        Capabilities=list(capabilities))
        action = "created"
    else:
        declared = {p["ParameterKey"] for p in cf.get_template_summary(TemplateBody=template_body).get("Parameters", [])}
        # the previous values, sent as values (moto's UsePreviousValue knows only the parameters
        # given at creation; the template has no NoEcho parameter, so DescribeStacks shows them all)
        previous = {p["ParameterKey"]: p["ParameterValue"] for p in current.get("Parameters", [])}
        keep = [{"ParameterKey": k, "ParameterValue": previous[k]}
                for k in sorted((set(previous) & declared) - set(parameters))]
        try:
            cf.update_stack(StackName=name, TemplateBody=template_body, Parameters=given + keep,
                            Capabilities=list(capabilities))
        except cf.exceptions.ClientError as exc:
            if "No updates are to be performed" in str(exc):
                return StackResult(name, "unchanged", current["StackStatus"], _outputs(current),
                                   time.monotonic() - t0)
            raise
        action = "updated"
    st = wait(cf, name, since, timeout, poll)
    return StackResult(name, action, st["StackStatus"], _outputs(st), time.monotonic() - t0)


def delete(name: str, *, cf=None, timeout: float = 3600.0, poll: float = 2.0) -> StackResult:
    """Delete the stack (resources with DeletionPolicy Retain stay: the state table, the bucket)."""
    cf = cf or aws.boto3_client("cloudformation")
    t0, since = time.monotonic(), time.time()
    if _stack(cf, name) is None:
        return StackResult(name, "absent", "DELETE_COMPLETE")
    cf.delete_stack(StackName=name)
    st = wait(cf, name, since, timeout, poll)
    return StackResult(name, "deleted", st["StackStatus"], seconds=time.monotonic() - t0)


def outputs(name: str, cf=None) -> dict[str, str]:
    cf = cf or aws.boto3_client("cloudformation")
    st = _stack(cf, name)
    if st is None:
        raise StackError(f"stack {name}: does not exist")
    return _outputs(st)


def _outputs(stack: dict) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
