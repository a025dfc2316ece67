// Drives the official Anthropic TypeScript SDK for the Python tests (tests/infra/node_sdk.py).
//
// Reads one command as JSON on stdin, runs it with the SDK against `base_url`, and prints one JSON
// result on stdout. Every HTTP attempt the SDK makes (retries included) is recorded through the
// SDK's `fetch` option and returned as `attempts`. An API error is a result ({ok: false, ...}, exit
// code 0); only a broken command or harness exits non-zero.
//
// Command: {base_url, api_key, op, params?, query?, id?, headers?, max_retries?, auth?,
//           client_options?}
//   op: create | stream_raw | stream | count_tokens | models_list | models_retrieve
//   auth: "api_key" (default; the SDK's `apiKey` option), "bearer" (its `authToken` option), or
//         "x-api-key" (`apiKey`, with the SDK's Authorization header swapped for `x-api-key`).
//         SDK 1.x sends both `apiKey` and `authToken` as `Authorization: Bearer <key>`.
//
// Params are sent as given: the SDK passes keys it does not know through in the body (it only moves
// `user_profile_id` and `workspace_id` into headers), so no extra_body equivalent is needed.
//
// The SDK is imported from SLUICE_TS_SDK_ENTRY (the absolute path of its index.mjs), because ESM
// import resolution ignores NODE_PATH.

import { pathToFileURL } from 'node:url';

// stdout carries the result only: whatever the SDK logs goes to stderr.
const toStderr = (...args) => console.error(...args);
console.log = console.info = console.debug = toStderr;
const logger = { error: toStderr, warn: toStderr, info: toStderr, debug: toStderr };

const entry = process.env.SLUICE_TS_SDK_ENTRY;
const sdkURL = entry ? pathToFileURL(entry).href : '@anthropic-ai/sdk';
const { default: Anthropic } = await import(sdkURL);

const headersObject = (headers) =>
  headers ? Object.fromEntries(new Headers(headers).entries()) : null;

function recordingFetch(attempts) {
  return async (url, init = {}) => {
    const u = new URL(typeof url === 'string' ? url : url instanceof URL ? url.href : url.url);
    const sent = new Headers(init.headers);
    let body = null;
    if (typeof init.body === 'string') {
      try {
        body = JSON.parse(init.body);
      } catch {
        body = init.body;
      }
    }
    const attempt = {
      method: (init.method ?? 'GET').toUpperCase(),
      path: u.pathname,
      query: Object.fromEntries(u.searchParams),
      status: null,
      request_headers: {
        'anthropic-version': sent.get('anthropic-version'),
        'anthropic-beta': sent.get('anthropic-beta'),
        authorization: sent.has('authorization'),
        'x-api-key': sent.has('x-api-key'),
        'user-agent': sent.get('user-agent'),
      },
      authorization_scheme: sent.get('authorization')?.split(' ')[0] ?? null,
      body,
      response_headers: null,
      error: null,
    };
    attempts.push(attempt);
    try {
      const response = await fetch(url, init);
      attempt.status = response.status;
      attempt.response_headers = headersObject(response.headers);
      return response;
    } catch (err) {
      attempt.error = String(err?.cause ?? err);
      throw err;
    }
  };
}

function makeClient(cmd, attempts) {
  const auth = cmd.auth ?? 'api_key';
  const options = {
    baseURL: cmd.base_url,
    maxRetries: cmd.max_retries ?? 0,
    fetch: recordingFetch(attempts),
    logger,
    ...(cmd.client_options ?? {}),
  };
  if (auth === 'api_key') {
    options.apiKey = cmd.api_key;
  } else if (auth === 'bearer') {
    options.authToken = cmd.api_key;
  } else if (auth === 'x-api-key') {
    // A null header removes what the SDK set; the x-api-key header satisfies its auth check.
    options.apiKey = cmd.api_key;
    options.defaultHeaders = {
      ...(options.defaultHeaders ?? {}),
      authorization: null,
      'x-api-key': cmd.api_key,
    };
  } else {
    throw new Error(`unknown auth ${JSON.stringify(auth)}`);
  }
  return new Anthropic(options);
}

async function run(cmd, client, partial) {
  const params = cmd.params ?? {};
  const opts = cmd.headers ? { headers: cmd.headers } : undefined;
  switch (cmd.op) {
    case 'create':
      return { message: await client.messages.create(params, opts) };
    case 'stream_raw': {
      const stream = await client.messages.create({ ...params, stream: true }, opts);
      for await (const event of stream) partial.events.push(structuredClone(event));
      return { events: partial.events };
    }
    case 'stream': {
      const stream = client.messages.stream(params, opts);
      let text = '';
      // Cloned as it arrives: the helper builds its message snapshot in message_start's object.
      stream.on('streamEvent', (event) => partial.events.push(structuredClone(event)));
      stream.on('text', (delta) => (text += delta));
      const final = await stream.finalMessage();
      return { events: partial.events, final, text };
    }
    case 'count_tokens':
      return { result: await client.messages.countTokens(params, opts) };
    case 'models_list': {
      const first = await client.models.list(cmd.query ?? params, opts);
      const ids = [];
      for await (const model of first) ids.push(model.id);
      return { ids, first_page: first.body };
    }
    case 'models_retrieve':
      return { model: await client.models.retrieve(cmd.id, {}, opts) };
  }
}

function describeError(err) {
  return {
    name: err?.name ?? err?.constructor?.name ?? null,
    status: err?.status ?? null,
    message: String(err?.message ?? err),
    type: err?.error?.error?.type ?? err?.type ?? null,
    error_code: err?.errorCode ?? null,
    request_id: err?.requestID ?? null,
    body: err?.error ?? null,
    headers: err?.headers instanceof Headers ? headersObject(err.headers) : null,
  };
}

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const cmd = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const OPS = ['create', 'stream_raw', 'stream', 'count_tokens', 'models_list', 'models_retrieve'];
if (!OPS.includes(cmd.op)) throw new Error(`unknown op ${JSON.stringify(cmd.op)}`);
const attempts = [];
const client = makeClient(cmd, attempts); // a bad command throws before any request: exit code 1
const partial = { events: [] };
let result;
try {
  result = { ok: true, ...(await run(cmd, client, partial)), attempts };
} catch (err) {
  result = { ok: false, error: describeError(err), attempts };
  if (cmd.op === 'stream' || cmd.op === 'stream_raw') result.events = partial.events;
}
process.stdout.write(JSON.stringify(result) + '\n');
