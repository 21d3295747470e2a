/* A Web Worker stand-in for pages opened from file:// (ferroptim's own, a few lines).
 *
 * Browsers refuse `new Worker(url)` on file://, and Material's search runs in a worker.
 * MkDocs-Material's offline plugin adds a shim for that from a CDN, unless a script whose
 * URL contains "iframe-worker" is listed in `extra.polyfills` (mkdocs.yml lists this file),
 * so the site makes no request to any other host. On file:// this replaces `Worker` with
 * a hidden iframe that runs the worker's script: the iframe's `postMessage` talks to the
 * page and the page's `postMessage` dispatches a "message" event in the iframe, which is
 * all the search worker uses (it loads its index from search/search_index.js, which the
 * offline plugin writes). Over http(s) the browser's own Worker is kept.
 */
(function () {
  "use strict";
  if (location.protocol !== "file:") return;

  function FileWorker(url) {
    var target = document.createDocumentFragment();
    var self = this;
    this.onmessage = null;
    this.onerror = null;
    this.addEventListener = target.addEventListener.bind(target);
    this.removeEventListener = target.removeEventListener.bind(target);
    this.dispatchEvent = target.dispatchEvent.bind(target);
    var iframe = document.createElement("iframe");
    iframe.hidden = true;
    iframe.setAttribute("aria-hidden", "true");
    document.body.appendChild(iframe);
    this.iframe = iframe;
    var inner = iframe.contentWindow;
    var src = new URL(url, location.href).href;
    inner.document.open();
    inner.document.write(
      "<!doctype html><html><body><script>" +
        "postMessage = function (data) { parent.postMessage({ __fileWorker: true, data: data }, '*'); };" +
        "importScripts = function () { for (var i = 0; i < arguments.length; i++) {" +
        "  document.write('<script src=\"' + arguments[i] + '\"><\\/script>'); } };" +
        "</script><script src=\"" + src + "\"></script></body></html>"
    );
    inner.document.close();
    this.ready = new Promise(function (resolve) {
      if (inner.document.readyState === "complete") resolve();
      else inner.addEventListener("load", resolve);
    });
    this.listener = function (event) {
      if (event.source !== inner || !event.data || !event.data.__fileWorker) return;
      var message = new MessageEvent("message", { data: event.data.data });
      self.dispatchEvent(message);
      if (self.onmessage) self.onmessage(message);
    };
    window.addEventListener("message", this.listener);
  }

  FileWorker.prototype.postMessage = function (data) {
    var inner = this.iframe.contentWindow;
    this.ready.then(function () {
      inner.dispatchEvent(new MessageEvent("message", { data: data }));
    });
  };

  FileWorker.prototype.terminate = function () {
    window.removeEventListener("message", this.listener);
    this.iframe.remove();
  };

  window.Worker = FileWorker;
})();
