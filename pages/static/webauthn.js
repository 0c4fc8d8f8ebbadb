/* Passkeys and security keys: the calls around navigator.credentials on
   the challenge page (button #passkey-signin in section #passkey) and on
   the passkey enrolment page (form #passkey-register). The pages render
   those parts hidden, because they need this script and a browser with
   WebAuthn; without either the member sees their other methods.

   The element carrying data-begin and data-finish (the routes) also holds
   the page's hidden fields csrf, return_to and from; the CSRF token goes
   in the X-CSRF-Token header and the rest in the query, with remember=1
   (sign-in, the box ticked) or name (registration). Answers are JSON:
   {"redirect": path} goes on, {"error": key} shows the message the page
   rendered for key in #passkey-messages (li data-key) in #passkey-error.
   The script holds no message text of its own. */
(function () {
  "use strict";

  function supported() {
    return typeof window.PublicKeyCredential === "function" &&
      !!(navigator.credentials && navigator.credentials.create && navigator.credentials.get) &&
      typeof window.fetch === "function";
  }

  function fromB64url(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) {
      s += "=";
    }
    var bin = atob(s);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) {
      out[i] = bin.charCodeAt(i);
    }
    return out.buffer;
  }

  function toB64url(buf) {
    if (!buf) {
      return undefined;
    }
    var bytes = new Uint8Array(buf);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) {
      bin += String.fromCharCode(bytes[i]);
    }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function decodeIDs(list) {
    if (!list) {
      return;
    }
    for (var i = 0; i < list.length; i++) {
      list[i].id = fromB64url(list[i].id);
    }
  }

  // publicKey turns the server's options ({"publicKey": {...}}, binary
  // fields in base64url) into what navigator.credentials takes.
  function publicKey(options) {
    var pk = options.publicKey;
    pk.challenge = fromB64url(pk.challenge);
    if (pk.user && pk.user.id) {
      pk.user.id = fromB64url(pk.user.id);
    }
    decodeIDs(pk.allowCredentials);
    decodeIDs(pk.excludeCredentials);
    return pk;
  }

  // encode writes a PublicKeyCredential as the JSON the server reads.
  function encode(cred) {
    var r = cred.response;
    var response = { clientDataJSON: toB64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toB64url(r.attestationObject);
      if (typeof r.getTransports === "function") {
        response.transports = r.getTransports();
      }
    }
    if (r.authenticatorData) {
      response.authenticatorData = toB64url(r.authenticatorData);
      response.signature = toB64url(r.signature);
      if (r.userHandle && r.userHandle.byteLength) {
        response.userHandle = toB64url(r.userHandle);
      }
    }
    var out = {
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      response: response,
      clientExtensionResults: typeof cred.getClientExtensionResults === "function" ? cred.getClientExtensionResults() : {}
    };
    if (cred.authenticatorAttachment) {
      out.authenticatorAttachment = cred.authenticatorAttachment;
    }
    return JSON.stringify(out);
  }

  // A redirect the server gave: only a path on this site.
  function go(path) {
    if (typeof path === "string" && path.charAt(0) === "/" && path.charAt(1) !== "/" && path.charAt(1) !== "\\") {
      window.location.assign(path);
      return true;
    }
    return false;
  }

  function showError(key) {
    var box = document.getElementById("passkey-error");
    var list = document.getElementById("passkey-messages");
    if (!box || !list) {
      return;
    }
    var text = "";
    var items = list.getElementsByTagName("li");
    for (var i = 0; i < items.length; i++) {
      var k = items[i].getAttribute("data-key");
      if (k === key) {
        text = items[i].textContent;
        break;
      }
      if (k === "passkey_failed") {
        text = text || items[i].textContent;
      }
    }
    box.textContent = text;
    box.hidden = false;
  }

  function clearError() {
    var box = document.getElementById("passkey-error");
    if (box) {
      box.hidden = true;
      box.textContent = "";
    }
  }

  // post sends one step of a ceremony and resolves with the answer's
  // JSON; a refusal rejects with {key} (and follows its redirect).
  function post(url, csrf, body) {
    var init = {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, "Accept": "application/json" }
    };
    if (body) {
      init.headers["Content-Type"] = "application/json";
      init.body = body;
    }
    return fetch(url, init).then(function (res) {
      return res.json().then(function (data) {
        return { ok: res.ok, data: data || {} };
      }, function () {
        return { ok: false, data: {} };
      });
    }).then(function (a) {
      if (a.ok && !a.data.error) {
        return a.data;
      }
      if (a.data.redirect && go(a.data.redirect)) {
        return new Promise(function () {});
      }
      throw { key: a.data.error || "passkey_failed" };
    });
  }

  function field(holder, name) {
    var el = holder.querySelector("input[name=\"" + name + "\"]");
    if (!el) {
      return "";
    }
    if (el.type === "checkbox") {
      return el.checked ? el.value : "";
    }
    return el.value;
  }

  function query(holder, extra) {
    var parts = [];
    var add = function (k, v) {
      if (v) {
        parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(v));
      }
    };
    add("return_to", field(holder, "return_to"));
    add("from", field(holder, "from"));
    for (var k in extra) {
      if (Object.prototype.hasOwnProperty.call(extra, k)) {
        add(k, extra[k]);
      }
    }
    return parts.length ? "?" + parts.join("&") : "";
  }

  function failed(err) {
    var key = "passkey_failed";
    if (err && err.key) {
      key = err.key;
    } else if (err && err.name === "NotAllowedError") {
      key = "passkey_cancelled";
    } else if (err && err.name === "InvalidStateError") {
      key = "passkey_exists";
    }
    showError(key);
  }

  // run performs a ceremony: begin, the browser's call, finish, then on.
  function run(holder, button, q, call) {
    var csrf = field(holder, "csrf");
    clearError();
    button.disabled = true;
    post(holder.getAttribute("data-begin") + q, csrf, null).then(function (options) {
      return call({ publicKey: publicKey(options) });
    }).then(function (cred) {
      return post(holder.getAttribute("data-finish") + q, csrf, encode(cred));
    }).then(function (answer) {
      if (!go(answer.redirect)) {
        throw { key: "passkey_failed" };
      }
    }).catch(function (err) {
      button.disabled = false;
      failed(err);
    });
  }

  function signIn(section) {
    var button = document.getElementById("passkey-signin");
    if (!button) {
      return;
    }
    button.addEventListener("click", function () {
      run(section, button, query(section, { remember: field(section, "remember") }), function (o) {
        return navigator.credentials.get(o);
      });
    });
    section.hidden = false;
  }

  function register(form) {
    var button = document.getElementById("passkey-create");
    var input = document.getElementById("passkey-name");
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      if (!button || button.disabled) {
        return;
      }
      run(form, button, query(form, { name: input ? input.value : "" }), function (o) {
        return navigator.credentials.create(o);
      });
    });
    form.hidden = false;
  }

  function init() {
    var section = document.getElementById("passkey");
    var form = document.getElementById("passkey-register");
    if (!supported()) {
      // Said only where a passkey is all the page offers.
      var note = document.getElementById("passkey-unsupported");
      if (note) {
        note.hidden = false;
      }
      return;
    }
    if (section) {
      signIn(section);
    }
    if (form) {
      register(form);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
