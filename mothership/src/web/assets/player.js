(function(){
  var v=document.getElementById('player'), bar=document.getElementById('timeline'), sb=document.getElementById('storyboard');
  var total=parseFloat(bar.dataset.duration)||0;
  bar.addEventListener('click',function(e){var r=bar.getBoundingClientRect();v.currentTime=(e.clientX-r.left)/r.width*total;});
  var vtt=bar.dataset.storyboard, sprite=bar.dataset.sprite, cues=[];
  if(vtt){fetch(vtt).then(function(r){return r.text()}).then(function(t){
    var re=/(\d+):(\d+):(\d+(?:\.\d+)?) --> (\d+):(\d+):(\d+(?:\.\d+)?)\s+\S*#xywh=(\d+),(\d+),(\d+),(\d+)/g, m;
    while((m=re.exec(t))){cues.push({s:+m[1]*3600+ +m[2]*60+ +m[3],e:+m[4]*3600+ +m[5]*60+ +m[6],x:+m[7],y:+m[8],w:+m[9],h:+m[10]});}
  });}
  bar.addEventListener('mousemove',function(e){
    if(!cues.length)return; var r=bar.getBoundingClientRect(), t=(e.clientX-r.left)/r.width*total;
    var c=cues.find(function(c){return t>=c.s&&t<c.e}); if(!c){sb.style.display='none';return;}
    sb.style.display='block';sb.style.width=c.w+'px';sb.style.height=c.h+'px';
    sb.style.backgroundImage='url('+sprite+')';sb.style.backgroundPosition=(-c.x)+'px '+(-c.y)+'px';
    sb.style.left=(e.pageX-c.w/2)+'px';sb.style.top=(r.top+window.scrollY-c.h-6)+'px';
  });
  bar.addEventListener('mouseleave',function(){sb.style.display='none'});
  if(!v.canPlayType('application/vnd.apple.mpegurl')){document.getElementById('nohls').hidden=false;}
})();
