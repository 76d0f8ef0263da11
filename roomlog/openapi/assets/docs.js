// The /docs page: Swagger UI over the hub's own /openapi.json (no network beyond the hub:
// the validator badge, which would call a public service, is off).
"use strict";
window.ui = SwaggerUIBundle({
  url: new URL("openapi.json", document.baseURI).href,
  dom_id: "#api",
  deepLinking: true,
  validatorUrl: "none",
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
