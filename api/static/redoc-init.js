// Starts ReDoc on /redoc. A file of its own (not an inline script), so the page's
// Content-Security-Policy can allow scripts from this origin only.
"use strict";
(() => {
  const root = document.getElementById("redoc");
  Redoc.init(root.dataset.openapiUrl, {}, root);
})();
