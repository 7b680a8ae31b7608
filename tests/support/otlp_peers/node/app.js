'use strict';
// A Node.js Express service with the OpenTelemetry JS SDK: a peer exporting OTLP/HTTP (protobuf)
// traces and metrics to the hub (tests/support/otlp_peers). Configured by the standard variables:
//   OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME,
//   OTEL_METRIC_EXPORT_INTERVAL (milliseconds; the SDK's default temporality, cumulative).
// Listens on the socket inherited as file descriptor PEER_FD (bound by the test), or on PORT.
// On SIGTERM it stops accepting, shuts the SDK down (flushing both exporters) and exits.

const { NodeSDK, metrics } = require('@opentelemetry/sdk-node');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');
const { OTLPMetricExporter } = require('@opentelemetry/exporter-metrics-otlp-proto');
const { HttpInstrumentation } = require('@opentelemetry/instrumentation-http');
const { ExpressInstrumentation } = require('@opentelemetry/instrumentation-express');

const sdk = new NodeSDK({
  traceExporter: new OTLPTraceExporter(),
  metricReader: new metrics.PeriodicExportingMetricReader({
    exporter: new OTLPMetricExporter(),
    exportIntervalMillis: Number(process.env.OTEL_METRIC_EXPORT_INTERVAL || 60000),
  }),
  instrumentations: [new HttpInstrumentation(), new ExpressInstrumentation()],
});
sdk.start();

// Required after sdk.start(), so the instrumentations patch them.
const express = require('express');

const ITEMS = new Map([[1, 'apple'], [2, 'pear']]);
const app = express();
app.use(express.json());

app.get('/items', (req, res) => {
  res.json([...ITEMS].map(([id, name]) => ({ id, name })));
});

app.get('/items/:id', (req, res) => {
  const name = ITEMS.get(Number(req.params.id));
  if (name === undefined) {
    res.status(404).json({ detail: 'not found' });
    return;
  }
  res.json({ id: Number(req.params.id), name });
});

app.post('/items', (req, res) => {
  if (!req.body || typeof req.body.name !== 'string') {
    res.status(422).json({ detail: 'name is required' });
    return;
  }
  res.status(201).json({ id: 3, name: req.body.name });
});

app.get('/boom', () => {
  throw new Error('boom');
});

const server = process.env.PEER_FD
  ? app.listen({ fd: Number(process.env.PEER_FD) })
  : app.listen(Number(process.env.PORT || 0), '127.0.0.1');

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  server.close();
  server.closeAllConnections();
  sdk.shutdown().then(
    () => process.exit(0),
    (err) => {
      console.error('OpenTelemetry SDK shutdown failed', err);
      process.exit(1);
    },
  );
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
