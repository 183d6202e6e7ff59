// grpc-web clients for every DMOD service, talking to the Envoy gateway that served this page.
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AuthService } from "./gen/dmod/v1/auth_pb";
import { DatasetService } from "./gen/dmod/v1/datasets_pb";
import { EvaluationService } from "./gen/dmod/v1/evaluation_pb";
import { JobService } from "./gen/dmod/v1/jobs_pb";
import { MonitorService } from "./gen/dmod/v1/monitor_pb";
import { PartitionerService } from "./gen/dmod/v1/partitioner_pb";
import { SubsetService } from "./gen/dmod/v1/subset_pb";
import { Health } from "./rpc/wellknown";

const TOKEN_KEY = "dmod.token";

export function token(): string | null {
  return localStorage.getItem(TOKEN_KEY);
}

export function setToken(value: string | null): void {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

const bearer: Interceptor = (next) => (request) => {
  const value = token();
  if (value) request.header.set("authorization", `Bearer ${value}`);
  return next(request);
};

/** Unary calls time out after 30 s; streams pass `STREAM` (no deadline). */
export const transport = createGrpcWebTransport({
  baseUrl: location.origin,
  interceptors: [bearer],
  defaultTimeoutMs: 30_000,
});

export const STREAM = { timeoutMs: 0 } as const;

export const auth = createClient(AuthService, transport);
export const datasets = createClient(DatasetService, transport);
export const jobs = createClient(JobService, transport);
export const evaluations = createClient(EvaluationService, transport);
export const monitor = createClient(MonitorService, transport);
export const health = createClient(Health, transport);

/** Services whose health the header shows. */
export const SERVICES = [AuthService, DatasetService, JobService, PartitionerService, SubsetService,
  EvaluationService, MonitorService];
