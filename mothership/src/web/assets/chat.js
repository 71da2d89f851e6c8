// The chat pane: the messages up to the player's time, newest last. Text
// goes in with textContent, never as HTML.
(function(){
  var v=document.getElementById('player'), pane=document.getElementById('chat'), list=pane.querySelector('ol');
  var src=pane.dataset.src, loaded=[], from=-1, to=-1, busy=false, shown=-1;
  function load(t){
    if(busy)return; busy=true; var f=Math.max(0,t-60), e=t+30;
    fetch(src+'?from='+f+'&to='+e).then(function(r){return r.json()}).then(function(d){
      loaded=d.messages||[]; from=f; to=e; shown=-1; busy=false; draw(t);
    }).catch(function(){busy=false});
  }
  function draw(t){
    var upto=loaded.filter(function(m){return m.offset_secs<=t}).slice(-150);
    if(upto.length===shown)return; shown=upto.length; list.textContent='';
    upto.forEach(function(m){
      var li=document.createElement('li'), who=document.createElement('b');
      who.textContent=(m.display_name||m.login||'')+(m.notice?' ['+m.notice+']':'')+' ';
      if(m.color&&/^#[0-9a-fA-F]{6}$/.test(m.color))who.style.color=m.color;
      li.appendChild(who); li.appendChild(document.createTextNode(m.text||m.system_text||m.kind));
      li.dataset.offset=m.offset_secs; li.dataset.id=m.id; list.appendChild(li);
    });
    pane.scrollTop=pane.scrollHeight;
  }
  setInterval(function(){var t=v.currentTime||0; if(t<from||t>to-5)load(t); else draw(t);},500);
})();
