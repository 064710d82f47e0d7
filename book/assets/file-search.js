// Opened from disk (file://), the browser refuses the search page's fetch of each result page for its
// summary: one console error per result, and no summary anyway. There the results are listed without one.
(function () {
  if (window.location.protocol === "file:" && typeof DOCUMENTATION_OPTIONS !== "undefined") {
    DOCUMENTATION_OPTIONS.SHOW_SEARCH_SUMMARY = false;
  }
})();
