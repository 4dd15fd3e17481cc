// pm2 process file of the Bittensor validator exporter, for operators who run
// their validators under pm2. Install steps: docs/operations.md, "Running as a service".
// It runs the exporter that `make install` puts in this checkout's .venv (the
// versions of requirements-test.lock), with config.yaml of the checkout:
//
//   make install && cp config.example.yaml config.yaml    # then edit config.yaml
//   pm2 start deploy/ecosystem.config.js
//   pm2 save                                               # with `pm2 startup`: back after a reboot
//
// Endpoint URLs with API keys stay out of config.yaml: pm2 passes on the
// environment it is started from, so
//   BITTENSOR_EXPORTER_ENDPOINTS="wss://..." pm2 start deploy/ecosystem.config.js --update-env
// The history database (config.example.yaml's relative history.path) and the
// chain SDK's metadata cache land in the checkout.
const path = require("path");

const checkout = path.resolve(__dirname, "..");

module.exports = {
  apps: [
    {
      name: "bittensor-validator-exporter",
      cwd: checkout,
      script: path.join(checkout, ".venv", "bin", "bittensor-validator-exporter"),
      args: ["--config.file", "config.yaml", "--log.format", "logfmt"],
      // The console script is an executable of its own, not a Node.js program.
      interpreter: "none",
      autorestart: true,
      restart_delay: 10000,
      // Exit code 2 is a bad configuration or flag: restarting would not fix it.
      stop_exit_codes: [2],
      // `pm2 stop` sends SIGINT, which stops it cleanly within seconds (the
      // history write in progress finishes first); pm2's default would
      // SIGKILL after 1.6 s.
      kill_timeout: 30000,
    },
  ],
};
