#!/usr/bin/env node
// Cross-language check: subscribe to a session's progress with @grpc/grpc-js, loading the
// protos straight from protos/ (no generated code), and print each event as a JSON line.
//
// usage: node subscribe.js --address HOST:PORT --api-key KEY --session SESSION_ID
//                          [--after SEQ] [--until-terminal] [--max N]
// Exit 0 when the stream ended (or --max events arrived); 2 with {"error": ...} on a gRPC error.
"use strict";

const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

function parseArgs(argv) {
  const args = { after: 0, untilTerminal: false, max: 0 };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === "--until-terminal") args.untilTerminal = true;
    else if (flag === "--address") args.address = argv[++i];
    else if (flag === "--api-key") args.apiKey = argv[++i];
    else if (flag === "--session") args.session = argv[++i];
    else if (flag === "--after") args.after = Number(argv[++i]);
    else if (flag === "--max") args.max = Number(argv[++i]);
    else throw new Error(`unknown argument ${flag}`);
  }
  if (!args.address || !args.apiKey || !args.session) {
    throw new Error("--address, --api-key and --session are required");
  }
  return args;
}

function loadProgressService() {
  const protoRoot = path.resolve(__dirname, "..", "..", "protos");
  const definition = protoLoader.loadSync("vidsynth/v1/progress.proto", {
    includeDirs: [protoRoot],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).vidsynth.v1.ProgressService;
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const ProgressService = loadProgressService();
  const client = new ProgressService(args.address, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${args.apiKey}`);
  const deadline = new Date(Date.now() + 60_000);
  const call = client.Subscribe(
    { session_id: args.session, after_seq: args.after, until_terminal: args.untilTerminal },
    metadata,
    { deadline },
  );
  let received = 0;
  call.on("data", (event) => {
    received += 1;
    process.stdout.write(
      JSON.stringify({
        seq: event.seq,
        type: event.type,
        session_id: event.session_id,
        job_id: event.job_id,
        stage: event.stage,
        stage_percent: event.stage_percent,
        message: event.message,
      }) + "\n",
    );
    if (args.max && received >= args.max) {
      call.cancel();
      client.close();
    }
  });
  call.on("error", (error) => {
    if (error.code === grpc.status.CANCELLED && args.max && received >= args.max) {
      process.exitCode = 0;
      return;
    }
    process.stdout.write(
      JSON.stringify({ error: { code: error.code, status: grpc.status[error.code], details: error.details } }) +
        "\n",
    );
    process.exitCode = 2;
    client.close();
  });
  call.on("end", () => client.close());
}

main();
