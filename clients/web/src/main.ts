// DMOD web UI: jobs, datasets, evaluations and the node pool over grpc-web through the gateway.
import { h } from "./dom";
import { healthHeader, userArea } from "./header";
import { route, start } from "./router";
import { datasetView } from "./views/dataset";
import { datasetsView } from "./views/datasets";
import { evaluationsView, evaluationView } from "./views/evaluations";
import { jobView } from "./views/job";
import { jobsView } from "./views/jobs";
import { nodesView } from "./views/nodes";
import { submitView } from "./views/submit";

route(/^\/jobs\/?$/, jobsView);
route(/^\/jobs\/new$/, submitView);
route(/^\/jobs\/([^/]+)$/, jobView);
route(/^\/datasets\/?$/, datasetsView);
route(/^\/datasets\/([^/]+)$/, datasetView);
route(/^\/evaluations\/?$/, evaluationsView);
route(/^\/evaluations\/([^/]+)$/, evaluationView);
route(/^\/nodes\/?$/, nodesView);

const nav = h("nav", null,
  h("a", { href: "#/jobs" }, "Jobs"),
  h("a", { href: "#/datasets" }, "Datasets"),
  h("a", { href: "#/evaluations" }, "Evaluations"),
  h("a", { href: "#/nodes" }, "Nodes"));
const outlet = h("main", { id: "main" });

document.body.replaceChildren(
  h("header", null, h("a", { class: "brand", href: "#/jobs" }, "DMOD"), nav, healthHeader(), userArea()),
  outlet);
start(outlet, nav, "#/jobs");
