"""Mapping templates and request validation for the local gateway's REST APIs.

The local gateway (Rust) runs a small pool of these helpers, one render at a time each, and
talks to each in JSON lines on stdin/stdout. The helper says it is ready once its imports are
done, then answers each request with the request's own id:

    -> {"ready": true}
    {"id": 7, "op": "render", "template": "...", "body": "...", "params": {...}, "context": {...}}
    -> {"id": 7, "output": "...", "status": 404 | null, "headers": {...}}

Templates run on airspeed-ext, the Velocity engine AWS emulators use, with API Gateway's
`$input`, `$util` and `$context` (including `$context.responseOverride`). Request models are
validated by the gateway itself, in Rust.
"""
import base64
import json
import re
import sys
import urllib.parse

import airspeed

_TOKEN = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


def json_path(document, path):
    """A JSONPath subset: `$`, `$.a.b`, `$.a[0]`, `$['a']`."""
    path = (path or "$").strip()
    if not path.startswith("$"):
        raise ValueError(f"unsupported JSONPath {path!r}")
    value = document
    position = 1
    while position < len(path):
        match = _TOKEN.match(path, position)
        if not match:
            raise ValueError(f"unsupported JSONPath {path!r}")
        key = match.group(1) or match.group(3) or match.group(4)
        index = match.group(2)
        if index is not None:
            value = value[int(index)] if isinstance(value, list) and int(index) < len(value) else None
        elif isinstance(value, dict):
            value = value.get(key)
        else:
            value = None
        position = match.end()
    return value


class Input:
    def __init__(self, body, params):
        self.body = body
        self._params = params
        self._parsed = None

    def _document(self):
        if self._parsed is None:
            try:
                self._parsed = json.loads(self.body) if self.body else {}
            except (ValueError, RecursionError):
                # Not JSON, or nested deeper than Python's parser goes: the template sees no
                # document, as it sees a body that is not JSON.
                self._parsed = {}
        return self._parsed

    def json(self, path="$"):
        return json.dumps(json_path(self._document(), path))

    def path(self, path="$"):
        return json_path(self._document(), path)

    def params(self, name=None):
        if name is None:
            return self._params
        for where in ("path", "querystring", "header"):
            values = self._params.get(where, {})
            if name in values:
                return values[name]
            if where == "header":
                for key, value in values.items():
                    if key.lower() == name.lower():
                        return value
        return ""


class Util:
    @staticmethod
    def escapeJavaScript(value):
        # JavaScript string rules, as API Gateway applies them (single quotes escaped too).
        return json.dumps(str(value))[1:-1].replace("'", "\\'")

    @staticmethod
    def base64Encode(value):
        return base64.b64encode(str(value).encode()).decode()

    @staticmethod
    def base64Decode(value):
        return base64.b64decode(str(value)).decode()

    @staticmethod
    def urlEncode(value):
        return urllib.parse.quote_plus(str(value))

    @staticmethod
    def urlDecode(value):
        return urllib.parse.unquote_plus(str(value))

    @staticmethod
    def parseJson(value):
        return json.loads(value)

    @staticmethod
    def escapeJson(value):
        return json.dumps(str(value))[1:-1]


def render(request):
    context = dict(request.get("context") or {})
    override = {"status": None, "header": {}}
    context["responseOverride"] = override
    namespace = {
        "input": Input(request.get("body") or "", request.get("params") or {}),
        "util": Util(),
        "context": context,
        "stageVariables": request.get("stageVariables") or {},
    }
    output = airspeed.Template(request["template"]).merge(namespace)
    status = override.get("status")
    return {
        "output": output,
        "status": int(status) if status not in (None, "") else None,
        "headers": {k: str(v) for k, v in (override.get("header") or {}).items()},
    }


def main():
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        request_id = None
        try:
            request = json.loads(line)
            request_id = request.get("id")
            op = request.get("op")
            answer = render(request) if op == "render" else {"error": f"unknown op {op!r}"}
        except Exception as error:  # answer every line, whatever the template does
            answer = {"error": f"{type(error).__name__}: {error}"}
        answer["id"] = request_id
        try:
            text = json.dumps(answer)
        except (ValueError, TypeError, RecursionError) as error:
            text = json.dumps({"id": request_id, "error": f"{type(error).__name__}: {error}"})
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
