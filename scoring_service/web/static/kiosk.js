// Resident survey kiosk: answers are queued on the device with their response_id
// and uploaded (batch endpoint) with retries and backoff until acknowledged, so a
// kiosk that is offline loses nothing and a retried upload is never counted twice.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("kiosk-config").textContent);
  const TOKEN_KEY = "scoring.kiosk.token." + config.community_id;
  const QUEUE_KEY = "scoring.kiosk.queue." + config.community_id;
  const BATCH = 100;
  const $ = (id) => document.getElementById(id);

  // -- the queue (static/survey-queue.js), kept in localStorage so a reload or power cut loses nothing --
  function setOnline(online) {
    const net = $("net");
    net.textContent = online ? "联网" : "离线，稍后自动上传";
    net.classList.toggle("offline", !online);
  }
  // the upload's verdict on the answers still on the thanks screen: a refusal is said while the resident is
  // there (already answered for this household, the round ended), not hidden behind "已保存"
  const REFUSED = {
    household_already_responded: "该门牌号已参与过本轮测评，每户只计一次，这次的评价未计入。",
    round_closed: "本轮测评已结束，这次的评价未计入。",
    round_published: "本轮测评已结束，结果已公布，这次的评价未计入。",
  };
  let onScreen = null;  // the response_id of the answers the thanks screen is about
  const queue = SurveyQueue.create({
    key: QUEUE_KEY,
    batch: BATCH,
    url: () => config.round_id ? `/api/v1/rounds/${encodeURIComponent(config.round_id)}/surveys/batch` : null,
    token: () => localStorage.getItem(TOKEN_KEY),
    onPending: (n) => { $("pending").textContent = String(n); },
    onStatus: (state) => {
      if (state === "auth") { setOnline(true); $("net").textContent = "终端密钥无效，请联系管理员"; }
      else setOnline(state !== "offline");  // a closed round, 429 or 5xx: kept and retried
    },
    onResults: (results) => {
      const mine = onScreen && results.find((x) => x.response_id === onScreen);
      const thanks = $("thanks-text");
      if (!mine || !thanks || !$("thanks").classList.contains("active")) return;
      if (mine.status === "created" || mine.status === "duplicate") thanks.textContent = "您的评价已上传，感谢参与。";
      else thanks.textContent = REFUSED[mine.error] || "这次的评价未能计入，请联系社区工作人员。";
    },
  });
  const showPending = queue.refresh, schedule = queue.schedule;

  // -- screens -------------------------------------------------------------------
  function show(id) {
    document.querySelectorAll(".screen").forEach((s) => s.classList.toggle("active", s.id === id));
    const focusable = $(id) && $(id).querySelector("input, button");
    if (focusable) focusable.focus();
  }

  if (!config.round_id) { showPending(); return; }

  const steps = config.questions.concat([{code: null, name_zh: "总体评价", question_zh: config.overall_question}]);
  let answers = {}, step = 0, resetTimer = null;

  function renderStep() {
    const q = steps[step];
    $("q-progress").textContent = `第 ${step + 1} 题 / 共 ${steps.length} 题`;
    $("q-title").textContent = q.name_zh;
    $("q-text").textContent = q.question_zh;
    $("back").disabled = step === 0;
    show("question");
  }
  function answer(level) {
    const q = steps[step];
    if (q.code) answers[q.code] = level; else answers.__overall = level;
    step += 1;
    if (step < steps.length) renderStep(); else finish();
  }
  function finish() {
    const overall = answers.__overall || null;
    delete answers.__overall;
    const household = $("household").value.trim();
    const answered = Object.values(answers).some((v) => v !== null) || !!overall;
    const thanks = $("thanks-text");  // absent from a page cached offline by an older version
    if (thanks) thanks.textContent = answered ? "您的评价已保存，将自动上传。" : "您没有回答任何问题，本次未记录评价。";
    if (answered) {
      const response = {
        response_id: SurveyQueue.uuid4(),
        community_id: config.community_id,
        respondent_type: "resident",
        channel: "kiosk",
        submitted_at: new Date().toISOString(),
        answers: answers,
        overall: overall,
      };
      if (household) response.household_ref = household;
      onScreen = response.response_id;
      queue.push(response);
    }
    show("thanks");
    let left = 8;
    $("thanks-countdown").textContent = `${left} 秒后返回首页`;
    clearInterval(resetTimer);
    resetTimer = setInterval(() => {
      left -= 1;
      $("thanks-countdown").textContent = `${left} 秒后返回首页`;
      if (left <= 0) restart();
    }, 1000);
  }
  function restart() {
    clearInterval(resetTimer);
    onScreen = null;
    answers = {}; step = 0; $("household").value = "";
    show(localStorage.getItem(TOKEN_KEY) ? "welcome" : "setup");
  }

  document.querySelectorAll(".answer").forEach((b) =>
    b.addEventListener("click", () => answer(Number(b.dataset.level))));
  document.addEventListener("keydown", (e) => {
    if ($("question").classList.contains("active") && /^[1-5]$/.test(e.key)) answer(Number(e.key));
  });
  $("skip").addEventListener("click", () => answer(null));
  $("back").addEventListener("click", () => { if (step > 0) { step -= 1; renderStep(); } });
  $("start").addEventListener("click", () => { answers = {}; step = 0; renderStep(); });
  $("next-resident").addEventListener("click", restart);
  $("save-token").addEventListener("click", async () => {
    const token = $("token-input").value.trim();
    if (!token) { $("setup-error").textContent = "请输入密钥"; return; }
    const r = await fetch(`/api/v1/communities/${encodeURIComponent(config.community_id)}`,
      {headers: {"Authorization": "Bearer " + token}}).catch(() => null);
    if (r && !r.ok) { $("setup-error").textContent = "密钥无效或不属于本小区"; return; }
    localStorage.setItem(TOKEN_KEY, token);
    $("token-input").value = "";
    restart();
    schedule(100);
  });
  $("reset-token").addEventListener("click", () => {
    if (confirm("确定要更换终端密钥吗？未上传的评价会保留。")) { localStorage.removeItem(TOKEN_KEY); restart(); }
  });

  if ("serviceWorker" in navigator) {
    // needs https or localhost; the first visit did not pass through the worker, so cache this page now
    navigator.serviceWorker.register("/kiosk/sw.js")
      .then(() => navigator.serviceWorker.ready)
      .then(() => caches.open("scoring-kiosk-v1"))
      .then((cache) => cache.add(location.pathname))
      .catch(() => {});
  }
  showPending();
  setOnline(navigator.onLine);
  restart();
  schedule(500);
})();
