// The ipywidgets HTML manager takes the base URL of its icon fonts from its AMD module's URL, which
// require.js resolves against the page (book/generated/.../@jupyter-widgets/...): every chapter asked for
// fonts that are not there. Point the widget modules at the vendored folder next to this file.
(function () {
  var here = document.currentScript.src.replace(/[^/]*$/, "");
  require.config({paths: {
    "@jupyter-widgets": here + "widgets",
    "@jupyter-widgets/html-manager/dist": here + "widgets"
  }});
})();
