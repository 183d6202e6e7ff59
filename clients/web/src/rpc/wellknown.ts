// Minimal hand-written descriptors for messages DMOD's services send but protos/ does not define:
// google.rpc.ErrorInfo and google.rpc.BadRequest (error details in grpc-status-details-bin) and the
// grpc.health.v1 Health service (the health header). Field numbers follow the upstream .proto files;
// fields not listed here are skipped when decoding.
import { create, createFileRegistry, type Message } from "@bufbuild/protobuf";
import type { GenMessage, GenService } from "@bufbuild/protobuf/codegenv2";
import {
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  FileDescriptorProtoSchema,
} from "@bufbuild/protobuf/wkt";

type Field = { name: string; number: number; type: Type; label?: Label; typeName?: string };

function fields(list: Field[]) {
  return list.map((f) => ({ ...f, label: f.label ?? Label.OPTIONAL }));
}

const rpcFile = create(FileDescriptorProtoSchema, {
  name: "google/rpc/error_details.proto",
  package: "google.rpc",
  syntax: "proto3",
  messageType: [
    {
      name: "ErrorInfo",
      field: fields([
        { name: "reason", number: 1, type: Type.STRING },
        { name: "domain", number: 2, type: Type.STRING },
        { name: "metadata", number: 3, type: Type.MESSAGE, label: Label.REPEATED,
          typeName: ".google.rpc.ErrorInfo.MetadataEntry" },
      ]),
      nestedType: [{
        name: "MetadataEntry",
        field: fields([
          { name: "key", number: 1, type: Type.STRING },
          { name: "value", number: 2, type: Type.STRING },
        ]),
        options: { mapEntry: true },
      }],
    },
    {
      name: "BadRequest",
      field: fields([
        { name: "field_violations", number: 1, type: Type.MESSAGE, label: Label.REPEATED,
          typeName: ".google.rpc.BadRequest.FieldViolation" },
      ]),
      nestedType: [{
        name: "FieldViolation",
        field: fields([
          { name: "field", number: 1, type: Type.STRING },
          { name: "description", number: 2, type: Type.STRING },
          { name: "reason", number: 3, type: Type.STRING },
        ]),
      }],
    },
  ],
});

const healthFile = create(FileDescriptorProtoSchema, {
  name: "grpc/health/v1/health.proto",
  package: "grpc.health.v1",
  syntax: "proto3",
  messageType: [
    { name: "HealthCheckRequest", field: fields([{ name: "service", number: 1, type: Type.STRING }]) },
    {
      name: "HealthCheckResponse",
      field: fields([{ name: "status", number: 1, type: Type.ENUM,
        typeName: ".grpc.health.v1.HealthCheckResponse.ServingStatus" }]),
      enumType: [{
        name: "ServingStatus",
        value: [
          { name: "UNKNOWN", number: 0 },
          { name: "SERVING", number: 1 },
          { name: "NOT_SERVING", number: 2 },
          { name: "SERVICE_UNKNOWN", number: 3 },
        ],
      }],
    },
  ],
  service: [{
    name: "Health",
    method: [{
      name: "Check",
      inputType: ".grpc.health.v1.HealthCheckRequest",
      outputType: ".grpc.health.v1.HealthCheckResponse",
    }],
  }],
});

const registry = createFileRegistry(
  createFileRegistry(rpcFile, () => undefined),
  createFileRegistry(healthFile, () => undefined),
);

function message<T extends Message>(typeName: string): GenMessage<T> {
  const desc = registry.getMessage(typeName);
  if (!desc) throw new Error(`descriptor ${typeName} missing`);
  return desc as GenMessage<T>;
}

export type ErrorInfo = Message<"google.rpc.ErrorInfo"> & {
  reason: string;
  domain: string;
  metadata: { [key: string]: string };
};
export type FieldViolation = Message<"google.rpc.BadRequest.FieldViolation"> & {
  field: string;
  description: string;
  reason: string;
};
export type BadRequest = Message<"google.rpc.BadRequest"> & { fieldViolations: FieldViolation[] };

export const ErrorInfoSchema = message<ErrorInfo>("google.rpc.ErrorInfo");
export const BadRequestSchema = message<BadRequest>("google.rpc.BadRequest");

export enum ServingStatus {
  UNKNOWN = 0,
  SERVING = 1,
  NOT_SERVING = 2,
  SERVICE_UNKNOWN = 3,
}
export type HealthCheckRequest = Message<"grpc.health.v1.HealthCheckRequest"> & { service: string };
export type HealthCheckResponse = Message<"grpc.health.v1.HealthCheckResponse"> & { status: ServingStatus };
export const HealthCheckRequestSchema = message<HealthCheckRequest>("grpc.health.v1.HealthCheckRequest");
export const HealthCheckResponseSchema = message<HealthCheckResponse>("grpc.health.v1.HealthCheckResponse");

export const Health = registry.getService("grpc.health.v1.Health") as GenService<{
  check: { methodKind: "unary"; input: typeof HealthCheckRequestSchema; output: typeof HealthCheckResponseSchema };
}>;
