// A link to a folded evidence block (claims page: verdict -> evidence) opens it on arrival and scrolls it
// into view clear of the theme's sticky header; also when the hash changes on the same page.
(function () {
  function openTarget() {
    var id = decodeURIComponent(window.location.hash.slice(1));
    if (!id) return;
    var el = document.getElementById(id);
    if (!el) return;
    var box = el.tagName === "DETAILS" ? el : el.closest("details");
    if (box) box.open = true;
    el.scrollIntoView({block: "start"});
  }
  window.addEventListener("hashchange", openTarget);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", openTarget);
  else openTarget();
})();
