// A Basic-auth Lambda authorizer for an HTTP API (payload 2.0, simple responses), as the seeds
// write one: the expected credentials are read from Secrets Manager once per execution
// environment, and compared in constant time.
import { timingSafeEqual } from "node:crypto";
import { SecretsManagerClient, GetSecretValueCommand } from "@aws-sdk/client-secrets-manager";

const secretId = process.env.SECRET_ID;
const secrets = new SecretsManagerClient({});
let expected;

async function credentials() {
  if (expected === undefined) {
    const secret = await secrets.send(new GetSecretValueCommand({ SecretId: secretId }));
    const value = JSON.parse(secret.SecretString);
    expected = Buffer.from(`${value.username}:${value.password}`, "utf8");
  }
  return expected;
}

export async function handler(event) {
  const header = event.headers?.authorization ?? "";
  const [scheme, token] = header.split(" ", 2);
  if (scheme?.toLowerCase() !== "basic" || !token) return { isAuthorized: false };
  const given = Buffer.from(token, "base64");
  const want = await credentials();
  return { isAuthorized: given.length === want.length && timingSafeEqual(given, want) };
}
