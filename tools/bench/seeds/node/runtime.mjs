// The bench's Node.js runtime: a client of the Lambda Runtime API in plain Node.js, serving the
// handler named by _HANDLER ("file.export", file.mjs beside this one).
//
// AWS's own client for Node.js (npm aws-lambda-ric) builds curl and aws-lambda-cpp from source
// when installed, which needs cmake and autotools; this one needs nothing but Node.js. It does
// what a runtime must (Lambda developer guide, runtimes-api.html): load the handler during init,
// then loop on `next`, answer each invocation with `response` or `error`, and report a failed
// init with `init/error`. It keeps one connection to the Runtime API open, as AWS's client does.
import http from "node:http";

const api = process.env.AWS_LAMBDA_RUNTIME_API;
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const base = "/2018-06-01/runtime";

function call(method, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const [host, port] = api.split(":");
    const request = http.request(
      { host, port, method, path: base + path, agent, headers },
      (response) => {
        const chunks = [];
        response.on("data", (chunk) => chunks.push(chunk));
        response.on("end", () =>
          resolve({ headers: response.headers, body: Buffer.concat(chunks).toString("utf8") }),
        );
        response.on("error", reject);
      },
    );
    request.on("error", reject);
    request.end(body);
  });
}

function errorBody(error) {
  return JSON.stringify({
    errorType: error?.name ?? "Error",
    errorMessage: String(error?.message ?? error),
  });
}

let handler;
try {
  const [file, name] = (process.env._HANDLER ?? "").split(".");
  handler = (await import(`./${file}.mjs`))[name];
  if (typeof handler !== "function") throw new Error(`${process.env._HANDLER} is not a function`);
} catch (error) {
  await call("POST", "/init/error", errorBody(error), {
    "Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError",
  });
  process.exit(1);
}

for (;;) {
  const next = await call("GET", "/invocation/next");
  const id = next.headers["lambda-runtime-aws-request-id"];
  const context = {
    awsRequestId: id,
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    getRemainingTimeInMillis: () =>
      Number(next.headers["lambda-runtime-deadline-ms"]) - Date.now(),
  };
  try {
    const result = await handler(JSON.parse(next.body), context);
    await call("POST", `/invocation/${id}/response`, JSON.stringify(result ?? null));
  } catch (error) {
    await call("POST", `/invocation/${id}/error`, errorBody(error), {
      "Lambda-Runtime-Function-Error-Type": "Unhandled",
    });
  }
}
