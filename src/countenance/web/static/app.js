// countenance UI: drag and drop a probe, draw the faces found on it and pick one; poll ingest
// jobs. Small and dependency-free; every form also works without it.
(function () {
  "use strict";

  function searchPage() {
    var form = document.getElementById("search-form");
    if (!form) return;
    var drop = document.getElementById("drop"), input = document.getElementById("photo");
    var stage = document.getElementById("stage"), img = document.getElementById("probe-img");
    var boxes = document.getElementById("boxes"), note = document.getElementById("faces-note");
    var faceField = document.getElementById("face"), csrf = document.getElementById("csrf").value;

    ["dragenter", "dragover"].forEach(function (ev) {
      drop.addEventListener(ev, function (e) { e.preventDefault(); drop.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (ev) {
      drop.addEventListener(ev, function (e) { e.preventDefault(); drop.classList.remove("over"); });
    });
    drop.addEventListener("drop", function (e) {
      if (e.dataTransfer && e.dataTransfer.files.length) {
        input.files = e.dataTransfer.files;
        show(input.files[0]);
      }
    });
    input.addEventListener("change", function () { if (input.files.length) show(input.files[0]); });

    function show(file) {
      faceField.value = "";
      boxes.innerHTML = "";
      img.src = URL.createObjectURL(file);
      stage.hidden = false;
      document.getElementById("drop-hint").textContent = file.name + " (drop or click to change)";
      note.textContent = "Finding faces…";
      var body = new FormData();
      body.append("photo", file);
      fetch("/ui/detect", { method: "POST", body: body, headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" })
        .then(function (r) { return r.json().then(function (j) { return [r.ok, j]; }); })
        .then(function (res) {
          if (!res[0]) { note.textContent = res[1].error ? res[1].error.message : "That photo cannot be used."; return; }
          draw(res[1]);
        })
        .catch(function () { note.textContent = "Could not find faces; you can still search."; });
    }

    function draw(found) {
      boxes.innerHTML = "";
      if (!found.faces.length) { note.textContent = "No face found in this photo."; return; }
      found.faces.forEach(function (f, i) {
        var b = f.box, d = document.createElement("div");
        d.className = "box";
        d.style.left = (100 * b[0] / found.width) + "%";
        d.style.top = (100 * b[1] / found.height) + "%";
        d.style.width = (100 * (b[2] - b[0]) / found.width) + "%";
        d.style.height = (100 * (b[3] - b[1]) / found.height) + "%";
        d.innerHTML = "<span>" + (i + 1) + "</span>";
        d.dataset.box = b.join(",");
        d.addEventListener("click", function () { pick(d); });
        boxes.appendChild(d);
      });
      pick(boxes.firstChild);
      note.textContent = found.faces.length + (found.faces.length === 1 ? " face found." : " faces found: click the one to search for.");
    }

    function pick(d) {
      Array.prototype.forEach.call(boxes.children, function (c) { c.classList.remove("picked"); });
      d.classList.add("picked");
      faceField.value = d.dataset.box;
    }
  }

  function jobsPage() {
    var rows = document.querySelectorAll("#jobs tr[data-job]");
    Array.prototype.forEach.call(rows, function (row) {
      if (row.dataset.state !== "queued" && row.dataset.state !== "running") return;
      var timer = setInterval(function () {
        fetch("/ui/jobs/" + encodeURIComponent(row.dataset.job), { credentials: "same-origin" })
          .then(function (r) { return r.json(); })
          .then(function (j) {
            row.querySelector(".state").textContent = j.state;
            var p = row.querySelector("progress");
            p.max = j.total || 1; p.value = j.done;
            row.querySelector(".count").textContent = j.done + "/" + j.total;
            if (j.state === "done" || j.state === "failed") {
              clearInterval(timer);
              row.querySelector(".result").textContent = j.summary
                ? j.summary.photos + " photos, " + j.summary.faces + " faces" : (j.error || "");
            }
          })
          .catch(function () { clearInterval(timer); });
      }, 1000);
    });
  }

  // the Content-Security-Policy allows no inline handlers: confirmations and filters are here
  function forms() {
    Array.prototype.forEach.call(document.querySelectorAll("form[data-confirm]"), function (f) {
      f.addEventListener("submit", function (e) { if (!window.confirm(f.dataset.confirm)) e.preventDefault(); });
    });
    Array.prototype.forEach.call(document.querySelectorAll("select[data-autosubmit]"), function (s) {
      s.addEventListener("change", function () { s.form.submit(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { searchPage(); jobsPage(); forms(); });
})();
