// Starts the fauxqs SQS emulator bound to 127.0.0.1 only: fauxqs always listens on 0.0.0.0
// (its startFauxqs has no address option) and this project's servers stay on loopback, so
// the one listen call it makes is redirected here.
//
// FAUXQS_PORT picks the port; 0 (the default here) asks the kernel for a free one, and the
// port taken is printed as "fauxqs listening on http://127.0.0.1:PORT" for whoever started
// this (shared/emulator, localstack/emulators.sh) to read. Queue URLs come out as
// http://sqs.us-east-1.localhost:PORT/000000000000/NAME; fauxqs finds a queue by the URL's
// path, and the SDKs send requests to their configured endpoint, so the host never has to
// resolve.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const opts = args[0];
  if (opts && typeof opts === "object" && (opts.host === "0.0.0.0" || opts.host === "::")) {
    args[0] = { ...opts, host: "127.0.0.1" };
  }
  return listen.apply(this, args);
};

const { startFauxqs } = await import("fauxqs");
const server = await startFauxqs({
  port: Number.parseInt(process.env.FAUXQS_PORT ?? "0", 10),
  logger: process.env.FAUXQS_LOGGER === "true",
});
console.log(`fauxqs listening on http://127.0.0.1:${server.port}`);

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => server.stop().finally(() => process.exit(0)));
}
