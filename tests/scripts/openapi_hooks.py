"""Schemathesis hooks for tests/scripts/openapi-check.sh: keep generated jobs short.

The API takes sleep and spin jobs of up to an hour; a property run that submitted those (with
?wait=true) would hang or keep a CPU busy. The run is bounded in time, so every `ms` and
`timeout_ms` is cut to 50 ms before the request is sent. This changes the inputs, never the
document or the checks on the answers.
"""
import schemathesis

LIMIT = 50


def _cap(job):
    if isinstance(job, dict):
        for key in ("ms", "timeout_ms"):
            value = job.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > LIMIT:
                job[key] = LIMIT


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    body = case.body
    _cap(body)
    if isinstance(body, dict):
        _cap(body.get("job"))
