/* igris console: small progressive enhancements. Every page works without this file. */
(function () {
  "use strict";

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain-HTTP development hosts have no async clipboard: fall back to a hidden textarea.
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      try {
        document.execCommand("copy") ? resolve() : reject(new Error("copy refused"));
      } catch (err) {
        reject(err);
      } finally {
        document.body.removeChild(area);
      }
    });
  }

  document.addEventListener("click", function (event) {
    var copyButton = event.target.closest("[data-copy]");
    if (copyButton) {
      var source = document.querySelector(copyButton.getAttribute("data-copy"));
      if (!source) return;
      var label = copyButton.querySelector("span");
      var before = label ? label.textContent : null;
      copyText(source.textContent.trim()).then(function () {
        copyButton.classList.add("is-copied");
        if (label) label.textContent = "Copied";
        window.setTimeout(function () {
          copyButton.classList.remove("is-copied");
          if (label) label.textContent = before;
        }, 1800);
      }, function () {
        // Leave the text selected so the user can copy it by hand.
        var range = document.createRange();
        range.selectNodeContents(source);
        var selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
      });
      return;
    }

    var dismiss = event.target.closest("[data-dismiss]");
    if (dismiss) {
      var flash = dismiss.closest(".flash");
      if (flash) flash.remove();
      return;
    }

    // Close an open dropdown menu when clicking elsewhere.
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.removeAttribute("open");
    });
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      menu.removeAttribute("open");
    });
  });

  // Destructive forms ask once; the server still decides.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  // Show the header-name field only for the custom-header auth type.
  function syncAuthFields() {
    var type = document.getElementById("id_auth_type");
    var header = document.getElementById("id_auth_header_name");
    if (!type || !header) return;
    var field = header.closest(".field");
    if (field) field.style.visibility = type.value === "header" ? "visible" : "hidden";
  }
  document.addEventListener("change", function (event) {
    if (event.target && event.target.id === "id_auth_type") syncAuthFields();
  });
  document.addEventListener("DOMContentLoaded", syncAuthFields);
})();
