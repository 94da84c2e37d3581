# Starts Mosquitto once the controllers have written passwd, and reloads it (SIGHUP) whenever
# they rewrite it (a device enrolled or revoked).
until [ -f /edgefleet/mosquitto/passwd ]; do sleep 1; done
mosquitto -c /mosquitto/config/mosquitto.conf &
pid=$!
last=$(stat -c %Y /edgefleet/mosquitto/passwd)
while kill -0 "$pid" 2>/dev/null; do
  sleep 2
  now=$(stat -c %Y /edgefleet/mosquitto/passwd 2>/dev/null || echo "$last")
  if [ "$now" != "$last" ]; then kill -HUP "$pid"; last=$now; fi
done
wait "$pid"
