// Starts the fauxqs SQS emulator bound to 127.0.0.1 only (fauxqs itself always listens on
// 0.0.0.0, and this project's servers must stay on loopback). Port from FAUXQS_PORT.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (args[0] && typeof args[0] === "object" && (args[0].host === "0.0.0.0" || args[0].host === undefined)) {
    args[0] = { ...args[0], host: "127.0.0.1" };
  }
  return listen.apply(this, args);
};

const { startFauxqs } = await import("fauxqs");
const server = await startFauxqs({ logger: process.env.FAUXQS_LOGGER === "true", host: "localhost" });
console.log(`fauxqs listening on ${server.address}`);
