// prom-client's own modules, required one by one (see lib/deviceplugin/metrics.ts): its index also loads the
// default collectors, cluster aggregation, the push gateway client and OpenTelemetry, none of which we use.
declare module 'prom-client/lib/registry' {
  import { Registry } from 'prom-client';
  export = Registry;
}
declare module 'prom-client/lib/counter' {
  import { Counter } from 'prom-client';
  export = Counter;
}
declare module 'prom-client/lib/gauge' {
  import { Gauge } from 'prom-client';
  export = Gauge;
}
declare module 'prom-client/lib/histogram' {
  import { Histogram } from 'prom-client';
  export = Histogram;
}
