// The API reference page (/docs): Swagger UI, served by the service itself, reading its OpenAPI document.
// A file of its own so that the page needs no inline script under the pages' Content-Security-Policy.
window.ui = SwaggerUIBundle({url: "/api/v1/openapi.json", dom_id: "#swagger-ui"});
