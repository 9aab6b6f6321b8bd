// The pages the account emails link to: /_/#/auth/{action}/{token}, where action is
// confirm-verification, confirm-password-reset or confirm-email-change (PocketBase's link
// shape). The token names its collection; the page calls that collection's confirm endpoint.
"use strict";

(function () {
  var $ = function (id) { return document.getElementById(id); };
  var parts = location.hash.replace(/^#\/?/, "").split("/");
  var action = parts[0] === "auth" ? parts[1] : "";
  var token = parts[0] === "auth" ? decodeURIComponent(parts.slice(2).join("/")) : "";

  function show(text, isError) {
    $("status").textContent = text;
    $("status").className = isError ? "error" : "";
  }

  function collectionOf(jwt) {
    try {
      var payload = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(payload)).collectionId || "";
    } catch (e) {
      return "";
    }
  }

  function post(endpoint, body, done) {
    var collection = collectionOf(token);
    if (!collection) {
      show("This link is incomplete or damaged. Copy the whole link from the email.", true);
      return;
    }
    fetch("/api/collections/" + encodeURIComponent(collection) + "/" + endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }).then(function (res) {
      if (res.ok) {
        $("form").hidden = true;
        show(done, false);
        return;
      }
      return res.json().then(function (problem) {
        var fields = problem.data || {};
        var details = Object.keys(fields).map(function (k) { return k + ": " + fields[k].message; });
        show((problem.message || "The request failed.") + (details.length ? " " + details.join(" ") : ""), true);
      });
    }).catch(function () {
      show("The server could not be reached. Try again.", true);
    });
  }

  var pages = {
    "confirm-verification": {
      title: "Verify your email",
      start: function () {
        show("Verifying…", false);
        post("confirm-verification", { token: token }, "Your email address is verified. You can close this page.");
      },
    },
    "confirm-password-reset": {
      title: "Choose a new password",
      start: function () {
        show("Enter your new password twice.", false);
        $("new-password").hidden = false;
        $("form").hidden = false;
      },
      submit: function () {
        post("confirm-password-reset", {
          token: token,
          password: $("password").value,
          passwordConfirm: $("password-confirm").value,
        }, "Your password has been changed. Sign in with the new one.");
      },
    },
    "confirm-email-change": {
      title: "Confirm your new email address",
      start: function () {
        show("Enter your password to confirm the change.", false);
        $("current-password").hidden = false;
        $("form").hidden = false;
      },
      submit: function () {
        post("confirm-email-change", { token: token, password: $("current").value },
          "Your email address has been changed. Sign in with the new one.");
      },
    },
  };

  var page = pages[action];
  if (!page || !token) {
    show("Nothing to confirm here: open the link from your email.", false);
    return;
  }
  document.title = page.title;
  $("title").textContent = page.title;
  $("form").addEventListener("submit", function (event) {
    event.preventDefault();
    if (page.submit) page.submit();
  });
  page.start();
})();
