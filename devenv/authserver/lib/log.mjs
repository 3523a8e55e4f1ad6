// One log line, timestamped, on stdout (the launchers send it to the server's log file).
export function log(line) {
  process.stdout.write(`${new Date().toISOString()} ${line}\n`);
}
